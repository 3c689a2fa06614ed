"""Measures of attention weights and fitted curves: entropy, effective neighbours, roughness (chapters 3-4)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["attention_entropy", "effective_neighbours", "roughness"]


def _check_weights(weights: Tensor) -> None:
    if not isinstance(weights, Tensor) or weights.dim() < 1 or weights.shape[-1] == 0:
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"weights must be a tensor (..., n_k) with n_k >= 1, got {shape}")


def attention_entropy(weights: Tensor) -> Tensor:
    """Entropy -sum_i alpha_i log alpha_i of each row of weights, in nats (chapters 3-4).

    0 when one key takes all the weight, log(n_k) for uniform weights; a weight of 0 adds 0.

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
