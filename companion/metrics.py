"""Measures of attention weights, fitted curves and models.

Entropy and effective neighbours of attention weights, roughness of a curve (chapters
3-4), accuracy per input length (chapter 5), the gap to permutation equivariance
(chapter 7).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "attention_entropy", "effective_neighbours", "roughness", "accuracy_by_length",
    "permutation_gap",
]


def _check_weights(weights: Tensor) -> None:
    if not isinstance(weights, Tensor) or weights.dim() < 1 or weights.shape[-1] == 0:
        shape = (tuple(weights.shape) if isinstance(weights, Tensor)
                 else type(weights).__name__)
        raise ValueError(
            f"weights must be a tensor (..., n_k) with n_k >= 1, got {shape}"
        )


def attention_entropy(weights: Tensor) -> Tensor:
    """Entropy -sum_i alpha_i log alpha_i of each row of weights, in nats (ch. 3-4).

    0 when one key takes all the weight, log(n_k) for uniform weights; a weight of 0
    adds 0.

    Shapes: weights (..., n_k) -> (...).
    """
    _check_weights(weights)
    # xlogy gives 0 * log(0) = 0, the limit, where a plain product would give NaN.
    return -torch.special.xlogy(weights, weights).sum(dim=-1)  # (...)


def effective_neighbours(weights: Tensor) -> Tensor:
    """Effective number of keys a query averages over, 1 / sum_i alpha_i^2 (chapter 3).

    n_k for uniform weights, 1 when one key takes all the weight.

    Shapes: weights (..., n_k) -> (...).
    """
    _check_weights(weights)
    return 1 / (weights**2).sum(dim=-1)  # (...)


def roughness(y: Tensor) -> float:
    """Sum of squared second differences of a curve sampled on an even grid (chapter 3).

    0 for a straight line, large for a curve that bends often.

    Shapes: y (n,) with n >= 3 -> a float.
    """
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] < 3:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"y must be a 1-D tensor (n,) with n >= 3, got {shape}")
    return ((y[2:] - 2 * y[1:-1] + y[:-2]) ** 2).sum().item()


def accuracy_by_length(
    correct: Tensor, lengths: Tensor, edges: Sequence[int]
) -> tuple[list[str], Tensor, Tensor]:
    """Exact-match accuracy per bucket of lengths [edges[i], edges[i+1]) (chapter 5).

    Shapes: correct (N,) bool, lengths (N,) -> one label (a string), accuracy and
    count per bucket: len(edges) - 1 of them.
    """
    if correct.shape != lengths.shape:
        raise ValueError(
            f"correct and lengths must have the same shape, got "
            f"{tuple(correct.shape)} and {tuple(lengths.shape)}"
        )
    if len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(
            f"edges must be at least two increasing numbers, got {list(edges)}"
        )
    labels, acc, counts = [], [], []
    for lo, hi in zip(edges, edges[1:]):
        inside = (lengths >= lo) & (lengths < hi)  # (N,)
        labels.append(f"{lo}-{hi - 1}")
        counts.append(int(inside.sum()))
        acc.append(correct[inside].float().mean().item() if inside.any() else math.nan)
    return labels, torch.tensor(acc), torch.tensor(counts)


def permutation_gap(fn: Callable[[Tensor], Tensor], X: Tensor, perm: Tensor) -> float:
    """Largest |fn(X permuted) - fn(X) permuted|: 0 for an equivariant fn (chapter 7).

    Shapes: X (B, n, d), perm (n,) a permutation of 0 .. n-1; fn maps (B, n, d) to
    (B, n, d') -> a float.
    """
    _check_permutation(X, perm)
    perm = perm.to(X.device)
    with torch.no_grad():
        return (fn(X[:, perm]) - fn(X)[:, perm]).abs().max().item()


def _check_permutation(X: object, perm: object) -> None:
    if not isinstance(X, Tensor) or X.dim() != 3:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 3-D tensor (B, n, d), got {shape}")
    n = X.shape[1]
    if not isinstance(perm, Tensor) or perm.dim() != 1 or not torch.equal(
        torch.sort(perm.cpu()).values, torch.arange(n)
    ):
        raise ValueError(
            f"perm must be a permutation of 0..{n - 1} (a 1-D integer tensor), "
            f"got {perm!r:.80}"
        )


# Chapter 15: errors over the observed readings only (a 0 reading is missing).
__all__ += ["masked_mae", "masked_rmse", "masked_mape"]


def _observed(labels: Tensor, null_val: float) -> Tensor:
    if math.isnan(null_val):
        return ~torch.isnan(labels)
    return labels != null_val


def masked_mae(preds: Tensor, labels: Tensor, null_val: float = 0.0) -> Tensor:
    """Mean |preds - labels| over the observed labels, those != null_val (ch. 15).

    Shapes: preds, labels (...) -> a scalar tensor. A missing label neither counts
    as an error nor as a reading of 0; with no label observed the result is NaN (no
    score, to be skipped), never 0.
    """
    _check_preds_labels(preds, labels)
    observed = _observed(labels, null_val)  # (...) bool
    # Select, not multiply: a NaN or inf prediction at a missing reading stays out.
    return (preds[observed] - labels[observed]).abs().mean()  # mean of nothing: NaN


def masked_rmse(preds: Tensor, labels: Tensor, null_val: float = 0.0) -> Tensor:
    """Root mean squared error over the observed labels (chapter 15).

    Shapes: preds, labels (...) -> a scalar tensor, NaN when nothing is observed.
    """
    _check_preds_labels(preds, labels)
    observed = _observed(labels, null_val)
    return ((preds[observed] - labels[observed]) ** 2).mean().sqrt()


def masked_mape(preds: Tensor, labels: Tensor, null_val: float = 0.0) -> Tensor:
    """Mean |preds - labels| / |labels| over the observed labels, a fraction (ch. 15).

    Shapes: preds, labels (...) -> a scalar tensor, NaN when nothing is observed.
    """
    _check_preds_labels(preds, labels)
    observed = _observed(labels, null_val)
    p, y = preds[observed], labels[observed]
    return ((p - y).abs() / y.abs()).mean()


def _check_preds_labels(preds: object, labels: object) -> None:
    if not (isinstance(preds, Tensor) and isinstance(labels, Tensor)):
        raise ValueError("preds and labels must be tensors, got "
                         f"{type(preds).__name__} and {type(labels).__name__}")
    if preds.shape != labels.shape:
        raise ValueError("preds and labels must have the same shape, got "
                         f"{tuple(preds.shape)} and {tuple(labels.shape)}")
