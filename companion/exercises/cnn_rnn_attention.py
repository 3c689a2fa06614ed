"""Checks for the exercises of chapter 10, CNNs, RNNs and self-attention (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.exercises import call_on_copies, expect_close

__all__ = [
    "FORBIDDEN",
    "check_conv1d_as_attention_small",
    "check_conv1d_as_attention_thorough",
    "check_layers_to_reach_small",
    "check_layers_to_reach_thorough",
]

# What each answer may not call: the course's own implementation of it, and torch's convolutions (the judge
# scores such an answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "conv1d_as_attention": [
        "companion.conv_attention.conv_as_attention",
        "companion.conv_attention.conv_attention_weights",
        "torch.nn.functional.conv1d",
        "torch.conv1d",
        "torch.nn.Conv1d",
        "torch.nn.functional.unfold",
    ],
    "layers_to_reach": [
        "companion.conv_attention.reachable",
        "companion.conv_attention.max_path_length",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: a convolution as one-hot attention heads at fixed offsets
# ---------------------------------------------------------------------------


def _heads(n: int, offsets: list[int], dtype: torch.dtype) -> Tensor:
    """One-hot heads over the unpadded keys: row i of head h has a 1 at i + offsets[h], if inside."""
    A = torch.zeros(len(offsets), n, n, dtype=dtype)
    for h, off in enumerate(offsets):
        for i in range(n):
            if 0 <= i + off < n:
                A[h, i, i + off] = 1.0
    return A


def _circular_heads(n: int, offsets: list[int], dtype: torch.dtype) -> Tensor:
    A = torch.zeros(len(offsets), n, n, dtype=dtype)
    for h, off in enumerate(offsets):
        for i in range(n):
            A[h, i, (i + off) % n] = 1.0
    return A


def _by_heads(A: Tensor, X: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    values = torch.einsum("bmc,ocj->bjmo", X, weight)  # (B, h, n, d_v): tap j's values X W_j^T
    out = (A @ values).sum(dim=1)  # (B, n, d_v)
    return out if bias is None else out + bias


def _offsets(k: int, dilation: int) -> list[int]:
    return [(j - (k - 1) // 2) * dilation for j in range(k)]


def _conv_reference(X: Tensor, weight: Tensor, bias: Tensor, dilation: int) -> Tensor:
    p = dilation * (weight.shape[-1] - 1) // 2
    return F.conv1d(X.transpose(1, 2), weight, bias, padding=p, dilation=dilation).transpose(1, 2)


def _conv_mistakes(X: Tensor, weight: Tensor, bias: Tensor, dilation: int) -> dict[str, Tensor]:
    n, k = X.shape[1], weight.shape[-1]
    offsets = _offsets(k, dilation)
    A = _heads(n, offsets, X.dtype)
    mistakes = {
        "the kernel is flipped: that is the convolution of mathematics. nn.Conv1d computes a "
        "cross-correlation, so tap j reads position i + (j - (k - 1) / 2) * dilation, tap 0 the furthest "
        "to the left.": _by_heads(A, X, weight.flip(-1), bias),
        "the bias is missing: add it once, after summing the heads (not once per head).": (
            _by_heads(A, X, weight, None)),
        "the bias was added once per head: add it once, after summing the heads.": (
            _by_heads(A, X, weight, None) + k * bias),
        "the padding wraps around (circular): nn.Conv1d pads with zeros, so a head whose offset falls "
        "outside the sequence gives weight 0 at that position, not the position from the other "
        "end.": _by_heads(_circular_heads(n, offsets, X.dtype), X, weight, bias),
        "the offsets are shifted by one position to the right: with k taps the centre tap is "
        "j = (k - 1) / 2 and has offset 0.": _by_heads(_heads(n, [o + 1 for o in offsets], X.dtype), X,
                                                       weight, bias),
        "the offsets are shifted by one position to the left: with k taps the centre tap is "
        "j = (k - 1) / 2 and has offset 0.": _by_heads(_heads(n, [o - 1 for o in offsets], X.dtype), X,
                                                       weight, bias),
        "the heads were averaged: a convolution adds the taps' contributions, it does not average "
        "them.": _by_heads(A, X, weight, None) / k + bias,
    }
    if dilation > 1:
        mistakes["the dilation was ignored: tap j's offset is (j - (k - 1) / 2) * dilation."] = _by_heads(
            _heads(n, _offsets(k, 1), X.dtype), X, weight, bias)
    if weight.shape[0] == weight.shape[1]:
        mistakes["a kernel slice is transposed: head j's values are X W_j^T with W_j = weight[:, :, j] "
                 "of shape (d_v, d), as nn.Linear applies its weight."] = _by_heads(
                     A, X, weight.transpose(0, 1), bias)
    return mistakes


def _check_conv_on(fn: Callable[..., Any], X: Tensor, weight: Tensor, bias: Tensor, dilation: int,
                   seconds: float) -> None:
    actual = call_on_copies(fn, X, weight, bias, dilation, name="conv1d_as_attention", seconds=seconds)
    expect_close(actual, _conv_reference(X, weight, bias, dilation), name="conv1d_as_attention",
                 mistakes=_conv_mistakes(X, weight, bias, dilation), atol=1e-5, rtol=1e-4)


def _conv_args(B: int, n: int, d: int, d_v: int, k: int, gen: torch.Generator,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    X = torch.randn(B, n, d, generator=gen, dtype=dtype)
    weight = torch.randn(d_v, d, k, generator=gen, dtype=dtype)  # taps differ, so a flip shows
    bias = 1.0 + torch.rand(d_v, generator=gen, dtype=dtype)  # never near zero, so a missing bias shows
    return X, weight, bias


def check_conv1d_as_attention_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a batch of 2 sequences of 7 positions, d = 2, d_v = 3, kernel 3, dilation 1."""
    _check_conv_on(fn, *_conv_args(2, 7, 2, 3, 3, torch.Generator().manual_seed(0)), 1, seconds)


def check_conv1d_as_attention_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: square kernels, kernels of 1 and 5 taps, dilations 2 and 3, float64, short sequences."""
    gen = torch.Generator().manual_seed(1)
    for B, n, d, d_v, k, dilation in [(2, 9, 4, 4, 3, 1), (1, 12, 3, 5, 5, 1), (3, 10, 2, 2, 3, 2),
                                      (2, 11, 3, 4, 3, 3), (1, 5, 3, 2, 1, 1), (2, 3, 2, 3, 5, 1)]:
        _check_conv_on(fn, *_conv_args(B, n, d, d_v, k, gen), dilation, seconds)
    _check_conv_on(fn, *_conv_args(2, 8, 3, 3, 3, gen, dtype=torch.float64), 2, seconds)


# ---------------------------------------------------------------------------
# Exercise 2: how many layers connect input j to output i
# ---------------------------------------------------------------------------


def _layers_to_reach(C: Tensor) -> Tensor:
    n = C.shape[0]
    step = C.to(torch.int64)
    reach = torch.eye(n, dtype=torch.int64)
    D = torch.zeros(n, n, dtype=torch.int64)
    for layers in range(1, n + 1):
        reach = ((step @ reach) > 0).to(torch.int64)  # (n, n): paths through one more layer
        D[(D == 0) & (reach > 0)] = layers
    return D


def _reach_mistakes(C: Tensor) -> dict[str, Tensor]:
    D = _layers_to_reach(C)
    hops = torch.where(D > 0, D - 1, D)
    mistakes = {
        "the result is transposed: D[i, j] is about output i reading input j, and C[i, j] says that "
        "output i reads input j in one layer. Multiply C on the left: C @ reach.": _layers_to_reach(C.T),
        "a pair that is connected after one layer needs 1 layer, not 0: count the layers, starting at "
        "L = 1 for C itself.": hops,
        "pairs that no number of layers connects should be 0; you gave them another value.": (
            torch.where(D == 0, torch.full_like(D, -1), D)),
    }
    return mistakes


def _check_reach_on(fn: Callable[..., Any], C: Tensor, seconds: float) -> None:
    actual = call_on_copies(fn, C, name="layers_to_reach", seconds=seconds)
    if isinstance(actual, Tensor) and actual.dtype == torch.bool:
        raise AssertionError("`layers_to_reach` returned a boolean tensor: return the number of layers "
                             "(an int64 tensor), 0 where no number of layers connects the pair.")
    expect_close(actual, _layers_to_reach(C), name="layers_to_reach", mistakes=_reach_mistakes(C),
                 atol=0.0, rtol=0.0)


def _band(n: int, below: int, above: int) -> Tensor:
    gap = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # (n, n): i - j
    return (gap <= below) & (-gap <= above)


def check_layers_to_reach_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a recurrent step (i reads i - 1 and i) on 6 positions, whose result is not symmetric."""
    _check_reach_on(fn, _band(6, 1, 0), seconds)


def check_layers_to_reach_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: a width-3 convolution, attention, a shift with an empty diagonal, a random graph."""
    gen = torch.Generator().manual_seed(1)
    cases = [_band(9, 1, 1), torch.ones(5, 5, dtype=torch.bool), _band(7, 2, 0),
             _band(6, 1, -1),  # a pure shift: i reads i - 1 only, the diagonal is empty
             torch.rand(8, 8, generator=gen) < 0.2, torch.eye(1, dtype=torch.bool)]
    for C in cases:
        _check_reach_on(fn, C, seconds)
