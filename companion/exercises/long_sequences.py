"""Checks for the exercises of chapter 12, long sequences (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close, expect_returned

__all__ = [
    "FORBIDDEN",
    "check_online_softmax_merge_small",
    "check_online_softmax_merge_thorough",
    "check_local_attention_mask_small",
    "check_local_attention_mask_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "online_softmax_merge": [
        "companion.chunked_attention.online_softmax_merge",
        "companion.chunked_attention.chunked_attention",
    ],
    "local_attention_mask": [
        "companion.local_attention.local_attention_mask",
        "companion.local_attention.chunk_mask",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: merging two partial results of the online softmax
# ---------------------------------------------------------------------------

_PARTS = ("m", "l", "o")


def _merge(m_a: Tensor, l_a: Tensor, o_a: Tensor, m_b: Tensor, l_b: Tensor, o_b: Tensor) -> tuple[Tensor, ...]:
    m = torch.maximum(m_a, m_b)
    a, b = torch.exp(m_a - m), torch.exp(m_b - m)
    return m, a * l_a + b * l_b, a * o_a + b * o_b


def _merge_mistakes(m_a: Tensor, l_a: Tensor, o_a: Tensor, m_b: Tensor, l_b: Tensor,
                    o_b: Tensor) -> list[tuple[str, tuple[Tensor, ...]]]:
    """What the usual wrong merges return, each with the hint that names it."""
    m = torch.maximum(m_a, m_b)
    a, b = torch.exp(m_a - m), torch.exp(m_b - m)
    low = torch.minimum(m_a, m_b)
    la, lb = torch.exp(m_a - low), torch.exp(m_b - low)
    l_right, o_right = a * l_a + b * l_b, a * o_a + b * o_b
    return [
        ("the parts are added without rescaling: each was computed against its own maximum, so multiply "
         "part a by exp(m_a - m) and part b by exp(m_b - m), with m = max(m_a, m_b).",
         (m, l_a + l_b, o_a + o_b)),
        ("l is rescaled but o is not: both sums were taken against the old maxima, so o_a and o_b need the "
         "same factors exp(m_a - m) and exp(m_b - m) as l_a and l_b.", (m, l_right, o_a + o_b)),
        ("o is rescaled but l is not: l_a and l_b need the same factors exp(m_a - m), exp(m_b - m) as the "
         "outputs.", (m, l_a + l_b, o_right)),
        ("the factors are upside down: a sum taken against m_a is brought to the new maximum m by "
         "exp(m_a - m) (at most 1), not exp(m - m_a).",
         (m, l_a / a + l_b / b, o_a / a + o_b / b)),
        ("the new maximum is the smaller one: take m = max(m_a, m_b) (torch.maximum), so that no factor "
         "exp(m_a - m) exceeds 1.", (low, la * l_a + lb * l_b, la * o_a + lb * o_b)),
        ("o is divided by l: keep o unnormalised (sum of exp(s - m) v); the division by l happens once, "
         "after the last block.", (m, l_right, o_right / l_right)),
    ]


def _check_merge_on(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> None:
    name = "online_softmax_merge"
    actual = call_on_copies(fn, *args, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    if not isinstance(actual, (tuple, list)) or len(actual) != 3:
        raise AssertionError(f"`{name}` should return the three tensors (m, l, o) as a tuple, got "
                             f"{type(actual).__name__}" + (f" of length {len(actual)}" if isinstance(
                                 actual, (tuple, list)) else "") + ".")
    expected = _merge(*args)
    mistakes = _merge_mistakes(*args)
    wrong = [i for i, (x, y) in enumerate(zip(actual, expected)) if not _same(x, y)]
    if not wrong:
        return
    for hint, outputs in mistakes:
        if all(_same(x, y) for x, y in zip(actual, outputs)):
            raise AssertionError(f"`{name}`: {hint}")
    if any(isinstance(x, Tensor) and not torch.isfinite(x.detach().double()).all() for x in actual):
        raise AssertionError(f"`{name}` returned inf or NaN for large scores: did you take exp of the maxima "
                             "themselves? Only differences such as exp(m_a - m), which are at most 1, are safe.")
    i = wrong[0]
    expect_close(actual[i], expected[i], name=f"{name} (its {_PARTS[i]})")


def _same(x: Any, y: Tensor) -> bool:
    return (isinstance(x, Tensor) and x.shape == y.shape
            and bool(torch.allclose(x.detach().double(), y.double(), atol=1e-5, rtol=1e-4)))


def _partials(batch: tuple[int, ...], d_v: int, gen: torch.Generator, spread: float = 3.0,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    def one() -> tuple[Tensor, Tensor, Tensor]:
        m = spread * torch.randn(*batch, 1, generator=gen, dtype=dtype)
        l_ = 1.0 + 4.0 * torch.rand(*batch, 1, generator=gen, dtype=dtype)  # a sum of exps, >= 1
        o = torch.randn(*batch, d_v, generator=gen, dtype=dtype) * l_
        return m, l_, o
    return (*one(), *one())


def check_online_softmax_merge_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: two partial results for 2 x 3 queries with d_v = 4."""
    _check_merge_on(fn, _partials((2, 3), 4, torch.Generator().manual_seed(0)), seconds)


def check_online_softmax_merge_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: other shapes, float64, equal maxima, large scores (exp would overflow), an empty part."""
    gen = torch.Generator().manual_seed(1)
    for batch, d_v in [((5,), 3), ((2, 4, 3), 1), ((1, 1), 6)]:
        _check_merge_on(fn, _partials(batch, d_v, gen), seconds)
    _check_merge_on(fn, _partials((3, 2), 5, gen, dtype=torch.float64), seconds)
    m_a, l_a, o_a, _, l_b, o_b = _partials((4,), 3, gen)
    _check_merge_on(fn, (m_a, l_a, o_a, m_a.clone(), l_b, o_b), seconds)  # the same maximum
    m_a, l_a, o_a, m_b, l_b, o_b = _partials((3, 2), 4, gen)
    _check_merge_on(fn, (m_a + 200.0, l_a, o_a, m_b + 150.0, l_b, o_b), seconds)  # exp(200) is inf
    # Part b saw no key: m_b the lowest float, l_b = o_b = 0; the merge must give part a.
    empty = torch.full_like(m_b, torch.finfo(m_b.dtype).min)
    _check_merge_on(fn, (m_a, l_a, o_a, empty, torch.zeros_like(l_b), torch.zeros_like(o_b)), seconds)


# ---------------------------------------------------------------------------
# Exercise 2: the local attention mask, True where |i - j| <= window
# ---------------------------------------------------------------------------


def _band(n: int, window: int) -> Tensor:
    i = torch.arange(n)
    return (i[:, None] - i[None, :]).abs() <= window


def _mask_mistakes(n: int, window: int) -> dict[str, Tensor]:
    i = torch.arange(n)
    diff = i[:, None] - i[None, :]  # query minus key
    return {
        "the window is one too narrow: key j is visible when |i - j| <= window (<=, not <).":
            diff.abs() < window,
        "the mask is one-sided: keys on both sides within the window are visible, |i - j| <= window, "
        "not only the earlier ones.": (diff >= 0) & (diff <= window),
        "the mask is one-sided: keys on both sides within the window are visible, |i - j| <= window, "
        "not only the later ones.": (diff <= 0) & (-diff <= window),
        "the mask is inverted: True must mark the keys a query may attend to, |i - j| <= window.":
            diff.abs() > window,
        "window counts the keys on each side, not the whole width: use |i - j| <= window, not "
        "window // 2.": diff.abs() <= window // 2,
    }


def _check_mask_on(fn: Callable[..., Any], n: int, window: int, seconds: float) -> None:
    name = "local_attention_mask"
    actual = call_on_copies(fn, n, window, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _band(n, window)
    if isinstance(actual, Tensor) and actual.dtype != torch.bool:
        if actual.shape == expected.shape and _same(actual.double(), expected.double()):
            raise AssertionError(f"`{name}` returned dtype {actual.dtype}: return a bool tensor "
                                 "(a comparison such as `<=` gives one).")
    mistakes = {hint: m for hint, m in _mask_mistakes(n, window).items() if not torch.equal(m, expected)}
    expect_close(actual.double() if isinstance(actual, Tensor) and actual.dtype == torch.bool else actual,
                 expected.double(), name=f"{name}(n={n}, window={window})",
                 mistakes={h: m.double() for h, m in mistakes.items()})
    if actual.dtype != torch.bool:
        raise AssertionError(f"`{name}` returned dtype {actual.dtype}: return a bool tensor.")


def check_local_attention_mask_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: n = 7, window = 3."""
    _check_mask_on(fn, 7, 3, seconds)


def check_local_attention_mask_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: window 0 (only itself), 1, a window wider than the sequence, one position, longer n."""
    for n, window in [(33, 5), (5, 0), (7, 1), (4, 9), (1, 0), (1, 3), (16, 15)]:
        _check_mask_on(fn, n, window, seconds)
