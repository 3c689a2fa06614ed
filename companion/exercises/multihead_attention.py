"""Checks for the exercises of chapter 6, multi-head attention (how a check works: companion.exercises)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close, expect_differentiable, expect_returned
from companion.multihead import MultiHeadAttention, transpose_output, transpose_qkv

__all__ = [
    "FORBIDDEN",
    "reference_num_parameters",
    "check_split_heads_small",
    "check_split_heads_thorough",
    "check_merge_heads_small",
    "check_merge_heads_thorough",
    "check_num_parameters_small",
    "check_num_parameters_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "split_heads": ["companion.multihead.transpose_qkv"],
    "merge_heads": ["companion.multihead.transpose_output"],
    "mha_num_parameters": ["companion.multihead.MultiHeadAttention"],
}

_SPLIT = "split_heads"
_MERGE = "merge_heads"
_COUNT = "mha_num_parameters"

# On top of TORCH_HINTS (e.g. .view after permute): what the sizes of a head reshape are.
_HEAD_SIZES = {
    "is invalid for input of size": "The sizes of a reshape must multiply to the number of elements: check which "
                                    "axis holds num_heads and which holds num_hiddens // num_heads.",
}


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 1: split the features into heads, (b, n, d) -> (b * h, n, d / h)
# ---------------------------------------------------------------------------------------------------------------------


def _split_mistakes(X: Tensor, h: int) -> dict[str, Tensor]:
    b, n, d = X.shape
    dh = d // h
    return {
        "you reshaped without permuting: X.reshape(b * h, n, d // h) cuts the flat memory into chunks, so one "
        "'head' holds pieces of several positions. Reshape to (b, n, h, d // h), permute(0, 2, 1, 3), then "
        "fold to (b * h, n, d // h).": X.reshape(b * h, n, dh),
        "each head got every h-th feature (features 0, h, 2h, ... in head 0): the head axis must come before "
        "the per-head features, X.reshape(b, n, h, d // h), so head i owns the consecutive features "
        "i * d_h ... (i + 1) * d_h - 1.": X.reshape(b, n, dh, h).permute(0, 3, 1, 2).reshape(b * h, n, dh),
        "batch and heads are swapped: row i of the result must be head i % h of sequence i // h, so the batch "
        "axis stays first: permute(0, 2, 1, 3), not permute(2, 0, 1, 3).":
            X.reshape(b, n, h, dh).permute(2, 0, 1, 3).reshape(b * h, n, dh),
        "positions and per-head features are swapped, (b * h, d // h, n): permute(0, 2, 1, 3) moves only the "
        "head axis in front of the positions.": X.reshape(b, n, h, dh).permute(0, 2, 3, 1).reshape(b * h, dh, n),
        "the heads are not folded into the batch: you returned (b, h, n, d // h); reshape it to "
        "(b * h, n, d // h).": X.reshape(b, n, h, dh).permute(0, 2, 1, 3),
        "you returned (b, n, h, d // h): bring the heads next to the batch with permute(0, 2, 1, 3), then fold "
        "them into it, (b * h, n, d // h).": X.reshape(b, n, h, dh),
    }


def _expect_split(fn: Any, X: Tensor, h: int, seconds: float) -> None:
    actual = call_on_copies(fn, X, h, name=_SPLIT, seconds=seconds, hints=_HEAD_SIZES)
    expect_close(actual, transpose_qkv(X, h), name=_SPLIT, mistakes=_split_mistakes(X, h), atol=0, rtol=0)


def _numbered(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """0, 1, 2, ... so that every entry is distinct and every permutation shows."""
    return torch.arange(math.prod(shape), dtype=dtype).reshape(shape)


def check_split_heads_small(fn: Callable[[Tensor, int], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: two sequences of three positions, eight features, two and four heads.

    Shapes: fn((2, 3, 8), h) -> (2 * h, 3, 8 / h).
    """
    _expect_split(fn, _numbered(2, 3, 8), 2, seconds)
    _expect_split(fn, _numbered(2, 3, 8), 4, seconds)


def check_split_heads_thorough(fn: Callable[[Tensor, int], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, one head, one feature per head, float64, a non-contiguous input, autograd."""
    gen = torch.Generator().manual_seed(6)
    for b, n, d, h in [(3, 5, 12, 3), (1, 4, 6, 2), (4, 1, 8, 8), (2, 7, 10, 1), (5, 2, 9, 3)]:
        _expect_split(fn, torch.randn(b, n, d, generator=gen), h, seconds)
    _expect_split(fn, torch.randn(2, 3, 6, generator=gen, dtype=torch.float64), 3, seconds)
    # A transposed view, as a tensor often is after an earlier permute: .view on it fails.
    _expect_split(fn, torch.randn(2, 8, 4, generator=gen).transpose(1, 2), 4, seconds)
    X = torch.randn(2, 3, 8, generator=gen, requires_grad=True)
    out = call_on_copies(fn, X, 2, name=_SPLIT, seconds=seconds, hints=_HEAD_SIZES)
    expect_differentiable(out, name=_SPLIT, needs="the heads must stay connected to X (reshape and permute do)")


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 2: merge the heads back, (b * h, n, d_h) -> (b, n, h * d_h)
# ---------------------------------------------------------------------------------------------------------------------


def _merge_mistakes(Y: Tensor, h: int) -> dict[str, Tensor]:
    bh, n, dh = Y.shape
    b = bh // h
    return {
        "you reshaped without permuting: Y.reshape(b, n, h * d_h) mixes positions and heads. Unfold to "
        "(b, h, n, d_h), permute(0, 2, 1, 3) to (b, n, h, d_h), then reshape to (b, n, h * d_h).":
            Y.reshape(b, n, h * dh),
        "the heads' features are interleaved (feature j of head i landed at j * h + i): after unfolding, "
        "permute(0, 2, 1, 3) so that each head's d_h features stay together, then reshape.":
            Y.reshape(b, h, n, dh).permute(0, 2, 3, 1).reshape(b, n, dh * h),
        "batch and heads are swapped: row i of the input is head i % h of sequence i // h, so unfold it as "
        "(b, h, n, d_h), not (h, b, n, d_h).": Y.reshape(h, b, n, dh).permute(1, 2, 0, 3).reshape(b, n, h * dh),
        "the heads are not concatenated: you returned (b, n, h, d_h); reshape it to (b, n, h * d_h).":
            Y.reshape(b, h, n, dh).permute(0, 2, 1, 3),
        "you only unfolded the heads, (b, h, n, d_h): also permute(0, 2, 1, 3) and reshape to "
        "(b, n, h * d_h).": Y.reshape(b, h, n, dh),
    }


def _expect_merge(fn: Any, Y: Tensor, h: int, seconds: float) -> None:
    actual = call_on_copies(fn, Y, h, name=_MERGE, seconds=seconds, hints=_HEAD_SIZES)
    expect_close(actual, transpose_output(Y, h), name=_MERGE, mistakes=_merge_mistakes(Y, h), atol=0, rtol=0)


def check_merge_heads_small(fn: Callable[[Tensor, int], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: undo the split of two sequences, three positions, eight features, two and four heads.

    Shapes: fn((2 * h, 3, 8 / h), h) -> (2, 3, 8).
    """
    X = _numbered(2, 3, 8)
    for h in (2, 4):
        _expect_merge(fn, transpose_qkv(X, h), h, seconds)


def check_merge_heads_thorough(fn: Callable[[Tensor, int], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, one head, float64, a non-contiguous input, the round trip with transpose_qkv."""
    gen = torch.Generator().manual_seed(7)
    for b, n, dh, h in [(3, 5, 4, 3), (1, 4, 3, 2), (4, 1, 1, 8), (2, 7, 10, 1), (5, 2, 3, 3)]:
        _expect_merge(fn, torch.randn(b * h, n, dh, generator=gen), h, seconds)
    _expect_merge(fn, torch.randn(6, 3, 2, generator=gen, dtype=torch.float64), 3, seconds)
    _expect_merge(fn, torch.randn(4, 5, 6, generator=gen).transpose(1, 2), 2, seconds)
    X = torch.randn(3, 4, 12, generator=gen)
    for h in (1, 2, 3, 4, 6, 12):
        back = call_on_copies(fn, transpose_qkv(X, h), h, name=_MERGE, seconds=seconds, hints=_HEAD_SIZES)
        expect_close(back, X, name=f"{_MERGE}(transpose_qkv(X, {h}), {h})", mistakes=None, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 3: count the parameters of MultiHeadAttention
# ---------------------------------------------------------------------------------------------------------------------


def reference_num_parameters(num_hiddens: int, num_heads: int, query_size: int, key_size: int,
                             value_size: int, bias: bool) -> int:
    """Parameters of MultiHeadAttention, counted on the module itself (chapter 6)."""
    mha = MultiHeadAttention(num_hiddens, num_heads, 0.0, bias=bias, query_size=query_size,
                             key_size=key_size, value_size=value_size)
    return sum(p.numel() for p in mha.parameters())


def _count_mistakes(d: int, h: int, q: int, k: int, v: int, bias: bool) -> dict[str, int]:
    inputs = d * (q + k + v)  # W_q, W_k, W_v weights
    out = d * d  # W_o weight
    biases = 4 * d if bias else 0
    mistakes = {
        "W_o is missing: after the heads are concatenated, the output projection adds a num_hiddens x "
        "num_hiddens weight (and a bias when bias=True).": inputs + (3 * d if bias else 0),
        "every head was given full-size projections (num_heads times too many): the heads share num_hiddens, "
        "each projecting to num_hiddens / num_heads features, so the count does not depend on num_heads.":
            h * (inputs + biases) + out,
        "the whole count was multiplied by num_heads; the heads split num_hiddens between them, so the count "
        "does not depend on num_heads.": h * (inputs + out + biases),
        "only one head's projections were counted: the h heads together project to num_hiddens features, "
        "so W_q is num_hiddens x query_size, not (num_hiddens / num_heads) x query_size.":
            (d // h) * (q + k + v) + out + biases,
        "all three inputs were taken to have num_hiddens features: W_q, W_k and W_v read query_size, "
        "key_size and value_size features.": 4 * d * d + biases,
    }
    if bias:
        mistakes["the biases are missing: with bias=True each of W_q, W_k, W_v and W_o has num_hiddens of "
                 "them."] = inputs + out
        mistakes["only three biases were counted: W_o has one too when bias=True."] = inputs + out + 3 * d
    else:
        mistakes["with bias=False no layer has a bias; you counted 4 * num_hiddens of them."] = inputs + out + 4 * d
    return mistakes


def _expect_count(fn: Any, d: int, h: int, q: int, k: int, v: int, bias: bool, seconds: float) -> None:
    args = dict(num_hiddens=d, num_heads=h, query_size=q, key_size=k, value_size=v, bias=bias)
    actual = call_on_copies(fn, d, h, q, k, v, bias, name=_COUNT, seconds=seconds)
    case = ", ".join(f"{key}={val}" for key, val in args.items())
    expect_returned(actual, name=_COUNT)
    if isinstance(actual, Tensor) and actual.numel() == 1:
        actual = actual.item()
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) or (
            isinstance(actual, float) and not actual.is_integer()):
        raise AssertionError(f"`{_COUNT}` should return a whole number, got {actual!r} ({type(actual).__name__}).")
    actual = int(actual)
    expected = reference_num_parameters(**args)
    if actual == expected:
        return
    for hint, wrong in _count_mistakes(d, h, q, k, v, bias).items():
        if wrong == actual and wrong != expected:
            raise AssertionError(f"`{_COUNT}`({case}) returned {actual}: {hint}")
    raise AssertionError(f"`{_COUNT}`({case}) returned {actual}, expected {expected}.")


def check_num_parameters_small(fn: Callable[..., int], *, seconds: float = 10.0) -> None:
    """Public check: the chapter's module sizes, with and without biases."""
    _expect_count(fn, 12, 3, 10, 8, 8, False, seconds)
    _expect_count(fn, 12, 3, 10, 8, 8, True, seconds)
    _expect_count(fn, 16, 4, 16, 16, 16, True, seconds)


def check_num_parameters_thorough(fn: Callable[..., int], *, seconds: float = 10.0) -> None:
    """Hidden check: random sizes, one head, one feature per head, a GPT-2-sized layer."""
    gen = torch.Generator().manual_seed(9)
    for h in (1, 2, 5, 10):
        q, k, v = (int(s) for s in torch.randint(1, 30, (3,), generator=gen))
        _expect_count(fn, 20, h, q, k, v, bool(h % 2), seconds)
    _expect_count(fn, 6, 6, 3, 4, 5, True, seconds)
    _expect_count(fn, 7, 1, 7, 7, 7, False, seconds)
    _expect_count(fn, 768, 12, 768, 768, 768, True, seconds)  # the attention of GPT-2 small
