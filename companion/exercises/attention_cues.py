"""Checks for the exercises of chapter 1, attention cues (how a check works: companion.exercises)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close

__all__ = [
    "FORBIDDEN",
    "check_normalize_scores_values",
    "check_normalize_scores_thorough",
    "check_top_k_weights_values",
    "check_top_k_weights_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "normalize_scores": [
        "torch.softmax",
        "torch.nn.functional.softmax",
        "torch.special.softmax",
        "torch.Tensor.softmax",
    ],
    "top_k_weights": [],
}

# ---------------------------------------------------------------------------
# Exercise 1: normalising scores with a softmax over the keys
# ---------------------------------------------------------------------------

SOFTMAX_OFF_LIMITS = (
    "this exercise asks you to write the softmax yourself with torch.exp and a sum; "
    "torch.softmax is off limits here"
)


@contextlib.contextmanager
def _softmax_off_limits() -> Iterator[None]:
    """Make PyTorch's ready-made softmax raise while the learner's code runs."""

    def refuse(*args: Any, **kwargs: Any) -> Tensor:
        raise RuntimeError(SOFTMAX_OFF_LIMITS)

    with contextlib.ExitStack() as stack:
        for owner in (torch, torch.nn.functional, torch.special, torch.Tensor):
            stack.enter_context(mock.patch.object(owner, "softmax", refuse))
        yield


def _normalize_mistakes(scores: Tensor) -> dict[str, Tensor]:
    """What the usual wrong normalisations return on ``scores``, keyed by the hint that names them."""
    mistakes = {
        "you normalised over the queries (dim=0): each query (one row) spreads its attention over the keys, "
        "so the sum must run over the last axis, dim=-1.": torch.softmax(scores, dim=0),
        "you forgot torch.exp: divide exp(score) by the sum of the exponentials, not the scores by their sum.": scores
        / scores.sum(dim=-1, keepdim=True),
        "you normalised over the whole tensor: each query needs its own sum, "
        "torch.exp(s).sum(dim=-1, keepdim=True).": torch.exp(scores) / torch.exp(scores).sum(),
        "you forgot to divide by the sum: the exponentials must be normalised so that each row sums to one.": torch.exp(
            scores
        ),
        "the exponentials have the wrong sign: a higher score must get a larger weight, so use exp(+score).": torch.softmax(
            -scores, dim=-1
        ),
    }
    if scores.dim() == 3:
        mistakes[
            "you normalised along dim=1: for batched scores (batch, n_q, n_k) the keys are the last axis, "
            "so normalise along dim=-1."
        ] = torch.softmax(scores, dim=1)
    # A mistake that coincides with the right answer on this input (e.g. a square matrix) is no mistake here.
    right = torch.softmax(scores, dim=-1)
    return {hint: wrong for hint, wrong in mistakes.items() if wrong.shape != right.shape or not torch.allclose(wrong, right)}


def _not_a_matrix_hint(scores: Tensor) -> dict[str, Callable[[str], str | None]]:
    """For scores that are not (n_q, n_k): an error there usually means the code assumed two axes."""
    if scores.dim() == 2:
        return {}

    def hint(message: str) -> str | None:
        if "off limits" in message or "longer than" in message:
            return None
        return (f"On scores of shape {tuple(scores.shape)}: normalise along dim=-1, the keys' axis, so that "
                "(n_k,) and batched (batch, n_q, n_k) scores work too.")

    return {"`normalize_scores`": hint}  # any failure


def _check_normalize_on(normalize_scores: Callable[..., Any], scores: Tensor, seconds: float) -> None:
    with _softmax_off_limits():
        actual = call_on_copies(normalize_scores, scores, name="normalize_scores", seconds=seconds,
                                hints=_not_a_matrix_hint(scores))
    if isinstance(actual, Tensor) and not torch.isfinite(actual.detach()).all() and torch.isfinite(scores).all():
        raise AssertionError(
            "`normalize_scores` returned NaN or inf for large scores (here up to "
            f"{scores.abs().max().item():g} in size): exp overflowed. Subtract each row's maximum score before "
            "torch.exp; a softmax does not change when every score of a row moves by the same amount."
        )
    expect_close(actual, torch.softmax(scores, dim=-1), name="normalize_scores", mistakes=_normalize_mistakes(scores))


def check_normalize_scores_values(normalize_scores: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: two queries, three keys; every row must sum to one."""
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    _check_normalize_on(normalize_scores, scores, seconds)


def check_normalize_scores_thorough(normalize_scores: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, one query (n_k,), a batch (b, n_q, n_k), float64, and scores that overflow exp."""
    gen = torch.Generator().manual_seed(1)
    for shape in [(4, 6), (1, 1), (5, 2)]:
        _check_normalize_on(normalize_scores, 3 * torch.randn(shape, generator=gen), seconds)
    _check_normalize_on(normalize_scores, torch.randn(2, 3, 4, generator=gen), seconds)
    _check_normalize_on(normalize_scores, torch.randn(7, generator=gen), seconds)
    _check_normalize_on(normalize_scores, torch.randn(3, 5, generator=gen, dtype=torch.float64), seconds)
    # Equal scores mean no preference: the weights must be uniform.
    _check_normalize_on(normalize_scores, torch.full((2, 4), 0.3), seconds)
    # exp(1000) overflows float32 and exp(-1000) underflows: only the shifted form survives both.
    _check_normalize_on(normalize_scores, torch.tensor([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1001.0]]), seconds)


# ---------------------------------------------------------------------------
# Exercise 2: the weights of a search engine that shows the top k results
# ---------------------------------------------------------------------------


def _top_k(scores: Tensor, k: int, *, dim: int = -1, largest: bool = True) -> Tensor:
    """1/k on the k best (or worst) entries along ``dim``, 0 elsewhere."""
    idx = scores.topk(k, dim=dim, largest=largest).indices
    return torch.zeros_like(scores).scatter(dim, idx, 1.0 / k)


def _top_k_mistakes(scores: Tensor, k: int) -> dict[str, Tensor]:
    """What the usual wrong top-k weights return, keyed by the hint that names them."""
    top = scores.topk(k, dim=-1)
    mistakes = {
        "you put the weight on the k lowest scores: a search engine shows the k highest-scoring keys "
        "(torch.topk picks the largest by default).": _top_k(scores, k, largest=False),
        "each row sums to k: give each of the k results the weight 1/k, so that every query's weights sum to one.": (
            _top_k(scores, k) * k
        ),
        "you picked the top k along the queries (dim=0): each query ranks the keys, so work along dim=-1.": (
            _top_k(scores, k, dim=0) if k <= scores.shape[0] else None
        ),
        "you returned the indices of the top k keys, shape (n_q, k); return one weight per key, shape (n_q, n_k), "
        "with 1/k at those indices (torch.zeros_like + scatter, or a comparison with the k-th largest score).": top.indices,
        "you returned the top k scores, shape (n_q, k); return one weight per key, shape (n_q, n_k).": top.values,
        "the k results should count equally (1/k each), not in proportion to a softmax of their scores.": torch.zeros_like(
            scores
        ).scatter(-1, top.indices, torch.softmax(top.values, dim=-1)),
    }
    right = _top_k(scores, k)
    return {
        hint: wrong
        for hint, wrong in mistakes.items()
        if wrong is not None and (wrong.shape != right.shape or not torch.allclose(wrong.double(), right.double()))
    }


def _check_top_k_on(top_k_weights: Callable[..., Any], scores: Tensor, k: int, seconds: float) -> None:
    actual = call_on_copies(top_k_weights, scores, k, name="top_k_weights", seconds=seconds)
    if isinstance(actual, Tensor) and not actual.dtype.is_floating_point and actual.shape == scores.shape:
        raise AssertionError(
            f"`top_k_weights` returned a {actual.dtype} tensor: weights are fractions (1/k), "
            "so return a floating-point tensor."
        )
    expect_close(actual, _top_k(scores, k), name="top_k_weights", mistakes=_top_k_mistakes(scores, k))


def _distinct_scores(n_q: int, n_k: int, gen: torch.Generator) -> Tensor:
    """Scores without ties in a row, so the top k keys are well defined."""
    return torch.stack([torch.randperm(n_k, generator=gen).float() - n_k / 2 for _ in range(n_q)])  # (n_q, n_k)


def check_top_k_weights_values(top_k_weights: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: three queries, five keys, top 2."""
    scores = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5], [1.0, -2.0, 0.0, 4.0, 2.5], [-0.5, 0.2, 1.5, -3.0, 0.7]])
    _check_top_k_on(top_k_weights, scores, 2, seconds)


def check_top_k_weights_thorough(top_k_weights: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: k = 1 (an exact pick), k = n_k (plain average), random sizes, float64, negative scores."""
    gen = torch.Generator().manual_seed(3)
    _check_top_k_on(top_k_weights, _distinct_scores(4, 6, gen), 1, seconds)
    _check_top_k_on(top_k_weights, _distinct_scores(3, 5, gen), 5, seconds)
    for n_q, n_k, k in [(1, 4, 3), (6, 9, 3), (2, 12, 7)]:
        _check_top_k_on(top_k_weights, _distinct_scores(n_q, n_k, gen), k, seconds)
    _check_top_k_on(top_k_weights, _distinct_scores(3, 6, gen).double() - 100.0, 2, seconds)
