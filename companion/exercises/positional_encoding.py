"""Checks for the exercises of chapter 7, self-attention and positional encoding.

How a check works: companion.exercises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close
from companion.positional import apply_rotary, encoding_frequencies, offset_rotation, sinusoidal_encoding

__all__ = [
    "FORBIDDEN",
    "check_sinusoidal_encoding_small",
    "check_sinusoidal_encoding_thorough",
    "check_rotation_for_offset_small",
    "check_rotation_for_offset_thorough",
    "check_apply_rope_small",
    "check_apply_rope_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "sinusoidal_encoding": [
        "companion.positional.sinusoidal_encoding",
        "companion.positional.position_encoding",
        "companion.positional.PositionalEncoding",
    ],
    "rotation_for_offset": ["companion.positional.offset_rotation"],
    "apply_rope": ["companion.positional.apply_rotary"],
}

_SE = "sinusoidal_encoding"
_RO = "rotation_for_offset"
_AR = "apply_rope"
F64 = torch.float64
# A float32 angle pos * w_i is off by about pos * 6e-8, so answers computed in float32 pass.
_ATOL = 1e-4


def _interleave(first: Tensor, second: Tensor) -> Tensor:
    """Columns first[:, 0], second[:, 0], first[:, 1], ...  Shapes: (..., h), (..., h) -> (..., 2h)."""
    return torch.stack((first, second), dim=-1).flatten(-2)


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 1: the sinusoidal table
# ---------------------------------------------------------------------------------------------------------------------


def _angles(max_len: int, d: int, exponent: Tensor, base: float = 10000.0, start: int = 0) -> Tensor:
    """pos / base^(exponent / d) for pos = start .. start + max_len - 1.  Shapes: exponent (h,) -> (max_len, h)."""
    pos = torch.arange(start, start + max_len, dtype=F64)[:, None]
    return pos / base ** (exponent[None, :] / d)


def _se_mistakes(max_len: int, d: int) -> dict[str, Tensor]:
    """Tables that the usual mistakes produce, keyed by their hint.  Shapes: -> (max_len, d), or another shape."""
    two_i = torch.arange(0, d, 2, dtype=F64)  # (d/2,)
    a = _angles(max_len, d, two_i)  # (max_len, d/2), the right angles
    right = _interleave(a.sin(), a.cos())
    half = _angles(max_len, d, two_i / 2)  # base^(i/d): the pair index i where 2i belongs
    cols_sin, cols_cos = _angles(max_len, d, two_i), _angles(max_len, d, two_i + 1)  # exponent = column index j
    return {
        "sines and cosines are swapped: the even columns 2i hold sin(pos / 10000^(2i/d)) and the odd columns "
        "2i+1 hold the cosine.": _interleave(a.cos(), a.sin()),
        "the exponent uses i where it needs 2i: w_i = 1 / 10000^(2i/d) for the i-th sine-cosine pair (i = 0 .. "
        "d/2 - 1), so the exponent runs over 0, 2, 4, ... (torch.arange(0, d, 2) / d).": _interleave(
            half.sin(), half.cos()
        ),
        "each column got its own exponent j/d: the sine in column 2i and the cosine in column 2i+1 share one "
        "frequency, 1 / 10000^(2i/d).": _interleave(cols_sin.sin(), cols_cos.cos()),
        "the base is not 10000: the angle is pos / 10000^(2i/d).": _interleave(
            _angles(max_len, d, two_i, 1000.0).sin(), _angles(max_len, d, two_i, 1000.0).cos()
        ),
        "the base is e (you used exp(2i/d) where 10000^(2i/d) belongs): write 10000 ** (2i/d), or "
        "exp(2i/d * log(10000)).": _interleave(
            _angles(max_len, d, two_i, torch.e).sin(), _angles(max_len, d, two_i, torch.e).cos()
        ),
        "the positions start at 1; they start at 0, so row 0 is (0, 1, 0, 1, ...).": _interleave(
            _angles(max_len, d, two_i, start=1).sin(), _angles(max_len, d, two_i, start=1).cos()
        ),
        "all sines come first and then all cosines (the [sin | cos] layout of some other code); this course, "
        "like d2l, interleaves them: column 2i is a sine, column 2i+1 the cosine of the same "
        "frequency.": torch.cat((a.sin(), a.cos()), dim=-1),
        "you returned the table with a leading batch axis, (1, max_len, d); return the (max_len, d) table "
        "itself.": right[None],
        "you returned the transposed table, (d, max_len); rows are positions, columns are features.": right.T,
    }


_MULTIPLIED = (
    "you multiplied the position by 10000^(2i/d); divide by it: the frequencies must fall from 1 towards "
    "1/10000 across the columns."
)


def _multiplied(actual: Tensor, max_len: int, d: int) -> bool:
    """Does ``actual`` look like pos * 10000^(2i/d)?  Shapes: actual (max_len, d).

    Its angles reach thousands, where float32 rounding alone moves sin by 1e-4, so only the first two
    sine-cosine pairs (angles below pos * 10000^(2/d)) are compared.
    """
    if actual.shape != (max_len, d) or d < 4 or max_len < 2:
        return False
    two_i = torch.arange(0, 4, 2, dtype=F64)
    a = _angles(max_len, d, -two_i)  # (max_len, 2)
    wrong = _interleave(a.sin(), a.cos())  # (max_len, 4)
    return bool(torch.allclose(actual[:, :4].detach().double().cpu(), wrong, atol=_ATOL, rtol=0))


def _expect_se(fn: Any, max_len: int, d: int, seconds: float) -> None:
    actual = call_on_copies(fn, max_len, d, name=_SE, seconds=seconds)
    if isinstance(actual, Tensor) and actual.is_complex():
        raise AssertionError(f"`{_SE}` returned a complex tensor; return the real table of sines and cosines.")
    if isinstance(actual, Tensor) and d >= 4 and _multiplied(actual, max_len, d):
        raise AssertionError(f"`{_SE}`: {_MULTIPLIED}")
    expect_close(actual, sinusoidal_encoding(max_len, d, dtype=F64), name=_SE, mistakes=_se_mistakes(max_len, d),
                 atol=_ATOL, rtol=0)


def check_sinusoidal_encoding_small(fn: Callable[[int, int], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: an (8, 6) table.  Shapes: fn(max_len, d) -> (max_len, d)."""
    _expect_se(fn, 8, 6, seconds)


def check_sinusoidal_encoding_thorough(fn: Callable[[int, int], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: one position, width 2, wide and long tables, max_len below and above d."""
    for max_len, d in [(1, 4), (5, 2), (3, 10), (40, 32), (100, 128), (200, 16)]:
        _expect_se(fn, max_len, d, seconds)


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 2: the rotation M_k that moves every encoding k positions on
# ---------------------------------------------------------------------------------------------------------------------


def _block_matrix(c: Tensor, s: Tensor, pattern: tuple[int, int, int, int]) -> Tensor:
    """Block-diagonal (2h, 2h) with blocks [[p0, p1], [p2, p3]] built from c and s.  Shapes: c, s (h,)."""
    parts = {1: c, 2: s, -2: -s, 3: torch.zeros_like(c)}
    d = 2 * c.numel()
    M = torch.zeros(d, d, dtype=F64)
    even, odd = torch.arange(0, d, 2), torch.arange(1, d, 2)
    M[even, even], M[even, odd] = parts[pattern[0]], parts[pattern[1]]
    M[odd, even], M[odd, odd] = parts[pattern[2]], parts[pattern[3]]
    return M


def _ro_mistakes(k: int, d: int) -> dict[str, Tensor]:
    """Matrices that the usual mistakes produce, keyed by their hint.  Shapes: -> (d, d), or another shape."""
    w = encoding_frequencies(d)  # (d/2,)
    c, s = torch.cos(k * w), torch.sin(k * w)
    ones = torch.ones_like(w)
    half_w = 10000.0 ** (-torch.arange(d // 2, dtype=F64) / d)
    blocks = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # (d/2, 2, 2)
    return {
        "your matrix shifts backwards: P[pos] @ M gives P[pos - k]. You built M_{-k}, the transpose; the row "
        "vector (sin, cos) times M must give (sin(a + b), cos(a + b)), so block i is [[cos, -sin], [sin, cos]] "
        "with angle k w_i.": offset_rotation(-k, d, dtype=F64),
        "every block rotates by the angle k: block i must rotate by k w_i, with w_i = 1 / 10000^(2i/d) the "
        "frequency of columns 2i and 2i+1.": _block_matrix(torch.cos(k * ones), torch.sin(k * ones), (1, -2, 2, 1)),
        "the angles use 10000^(i/d); the pair i has frequency w_i = 1 / 10000^(2i/d).": _block_matrix(
            torch.cos(k * half_w), torch.sin(k * half_w), (1, -2, 2, 1)
        ),
        "this is not a rotation: both off-diagonal entries of a block are +sin; one of them must be "
        "-sin (block i is [[cos, -sin], [sin, cos]]).": _block_matrix(c, s, (1, 2, 2, 1)),
        "cos and sin are swapped inside the blocks: the diagonal of each block holds cos(k w_i), the "
        "off-diagonal entries -sin(k w_i) and sin(k w_i).": _block_matrix(s, c, (1, -2, 2, 1)),
        "you returned the d/2 blocks, shape (d/2, 2, 2); place them on the diagonal of a (d, d) matrix, "
        "for instance with torch.block_diag(*blocks).": blocks,
    }


def _expect_ro(fn: Any, k: int, d: int, seconds: float) -> None:
    actual = call_on_copies(fn, k, d, name=_RO, seconds=seconds)
    expect_close(actual, offset_rotation(k, d, dtype=F64), name=_RO, mistakes=_ro_mistakes(k, d), atol=_ATOL, rtol=0)


def check_rotation_for_offset_small(fn: Callable[[int, int], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: k = 1 and k = 3 at d = 6.  Shapes: fn(k, d) -> (d, d)."""
    _expect_ro(fn, 1, 6, seconds)
    _expect_ro(fn, 3, 6, seconds)


def check_rotation_for_offset_thorough(fn: Callable[[int, int], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: k = 0 (the identity), negative and large k, widths 2 to 64; P[pos] M_k = P[pos + k]."""
    for k, d in [(0, 8), (-2, 4), (1, 2), (7, 16), (250, 64), (-40, 10)]:
        _expect_ro(fn, k, d, seconds)
    # The property itself, on a table: every position moves on by k.
    M = call_on_copies(fn, 5, 12, name=_RO, seconds=seconds)
    P = sinusoidal_encoding(60, 12, dtype=F64)
    expect_close(P[:-5] @ M.detach().to(F64), P[5:], name=f"P[pos] @ {_RO}(5, 12)", atol=_ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 3: rotary position embedding
# ---------------------------------------------------------------------------------------------------------------------


def _rope_with(x: Tensor, w: Tensor, *, sign: float = 1.0, start: int = 0) -> Tensor:
    """Interleaved-pair rotation by sign * pos * w.  Shapes: x (..., n, d), w (d/2,) -> (..., n, d)."""
    pos = torch.arange(start, start + x.shape[-2], dtype=F64)[:, None]  # (n, 1)
    a = sign * pos * w  # (n, d/2)
    c, s = a.cos().to(x.dtype), a.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return _interleave(x1 * c - x2 * s, x1 * s + x2 * c)


def _ar_mistakes(x: Tensor) -> dict[str, Tensor]:
    """Outputs that the usual mistakes produce, keyed by their hint.  Shapes: x (..., n, d) -> (..., n, d)."""
    n, d = x.shape[-2:]
    w = encoding_frequencies(d)  # (d/2,)
    a = torch.arange(n, dtype=F64)[:, None] * w  # (n, d/2)
    c, s = a.cos().to(x.dtype), a.sin().to(x.dtype)
    lo, hi = x[..., : d // 2], x[..., d // 2 :]
    half_split = torch.cat((lo * c - hi * s, lo * s + hi * c), dim=-1)
    table = _interleave(a.sin(), a.cos()).to(x.dtype)  # (n, d), the sinusoidal encoding
    return {
        "the rotation goes the wrong way: the first coordinate of a pair becomes x1 cos - x2 sin and the second "
        "x1 sin + x2 cos (a counter-clockwise turn by pos w_i).": _rope_with(x, w, sign=-1.0),
        "you rotated the pairs (i, i + d/2), the half-split layout of some libraries; this exercise pairs "
        "neighbouring features (2i, 2i+1), the layout of the sinusoidal table.": half_split,
        "the angles use 10000^(i/d); pair i turns by pos / 10000^(2i/d).": _rope_with(
            x, 10000.0 ** (-torch.arange(d // 2, dtype=F64) / d)
        ),
        "every pair turns by the angle pos: pair i must turn by pos w_i, with w_i = 1 / 10000^(2i/d).": _rope_with(
            x, torch.ones_like(w)
        ),
        "the positions start at 1; the first row is position 0 and is left unchanged.": _rope_with(x, w, start=1),
        "you added the sinusoidal encoding; RoPE rotates each pair of features instead of adding "
        "anything.": x + table,
        "you multiplied by the encoding elementwise; a rotation mixes the two coordinates of each pair: "
        "(x1 cos - x2 sin, x1 sin + x2 cos).": x * table,
        "only the cosine part is there: a rotation also needs the sine terms, -x2 sin for the first coordinate "
        "and +x1 sin for the second.": _interleave(x[..., 0::2] * c, x[..., 1::2] * c),
    }


def _expect_ar(fn: Any, x: Tensor, seconds: float) -> None:
    actual = call_on_copies(fn, x, name=_AR, seconds=seconds)
    expect_close(actual, apply_rotary(x), name=_AR, mistakes=_ar_mistakes(x), atol=_ATOL, rtol=0)


def check_apply_rope_small(fn: Callable[[Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: five positions of width 4.  Shapes: fn(x (5, 4)) -> (5, 4)."""
    gen = torch.Generator().manual_seed(0)
    _expect_ar(fn, torch.randn(5, 4, generator=gen), seconds)


def check_apply_rope_thorough(fn: Callable[[Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: batched inputs, width 2, long sequences, float64; scores depend on the offset only."""
    gen = torch.Generator().manual_seed(7)
    for shape in [(3, 6, 8), (1, 2), (2, 4, 30, 16), (80, 32)]:
        _expect_ar(fn, torch.randn(*shape, generator=gen), seconds)
    _expect_ar(fn, torch.randn(7, 10, generator=gen, dtype=F64), seconds)
    # The point of RoPE: with the same q and k at every position, the score of (m, n) depends on m - n only.
    q, k = torch.randn(1, 12, generator=gen, dtype=F64), torch.randn(1, 12, generator=gen, dtype=F64)
    Q = call_on_copies(fn, q.expand(20, 12), name=_AR, seconds=seconds)
    K = call_on_copies(fn, k.expand(20, 12), name=_AR, seconds=seconds)
    S = (Q.detach().to(F64) @ K.detach().to(F64).T)  # (20, 20)
    for off in (-3, 0, 5):
        diag = torch.diagonal(S, offset=off)
        expect_close(diag, torch.full_like(diag, diag[0].item()),
                     name=f"the scores on diagonal {off} of `{_AR}`(q) @ `{_AR}`(k).T", atol=_ATOL, rtol=0)
