"""The gated MLP: a spatial gating unit in place of attention (gMLP, chapter 11).

Liu, Dai, So and Le (2021), "Pay Attention to MLPs". Positions mix through one
learned n x n matrix, the same for every input, and the result gates the other half
of the features element-wise.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .utils import check_positive_int

__all__ = ["SpatialGatingUnit", "gMLPBlock"]


class SpatialGatingUnit(nn.Module):
    """s(Z) = U * (W LN(V) + b): eq. (sgu) of chapter 11, with Z = [U, V].

    W (n x n, over positions) starts near zero and b at one, so that at first the
    unit passes U through and mixes no positions. Built for seq_len positions: a
    shorter input uses W's first n rows and columns (the same as padding V with
    zeros), a longer one raises ValueError.
    Shapes: forward(Z (B, n, d_ff)) -> (B, n, d_ff / 2), with d_ff = num_hiddens.
    """

    def __init__(self, seq_len: int, num_hiddens: int, init_scale: float = 1e-3):
        super().__init__()
        _check_sgu_sizes(seq_len, num_hiddens)
        self.seq_len = seq_len
        self.norm = nn.LayerNorm(num_hiddens // 2)
        # W (n, n): row i says how output position i reads the others.
        self.weight = nn.Parameter(
            torch.empty(seq_len, seq_len).uniform_(-init_scale, init_scale) / seq_len)
        self.bias = nn.Parameter(torch.ones(seq_len))  # (n,)

    def forward(self, Z: Tensor) -> Tensor:
        """Split the features, mix one half over positions, gate the other with it."""
        n = _check_sgu_input(Z, self.seq_len, 2 * self.norm.normalized_shape[0])
        U, V = Z.chunk(2, dim=-1)  # (B, n, d_ff / 2) each
        W, b = self.weight[:n, :n], self.bias[:n]
        V = W @ self.norm(V) + b[:, None]  # (n, n) @ (B, n, d_ff / 2): mixes positions
        return U * V  # element-wise: a gate per position and feature, no softmax


def _check_sgu_sizes(seq_len: int, num_hiddens: int) -> None:
    check_positive_int("seq_len", seq_len)
    check_positive_int("num_hiddens", num_hiddens)
    if num_hiddens % 2:
        raise ValueError(
            f"num_hiddens is split into two halves, so it must be even, got "
            f"{num_hiddens}")


def _check_sgu_input(Z: Tensor, seq_len: int, width: int) -> int:
    if Z.dim() != 3 or Z.shape[-1] != width:
        raise ValueError(f"Z must have shape (batch, n, {width}), got {tuple(Z.shape)}")
    if Z.shape[1] > seq_len:
        raise ValueError(
            f"this unit was built for sequences of at most {seq_len} positions (its "
            f"spatial weights are {seq_len} x {seq_len}), got {Z.shape[1]}")
    return Z.shape[1]


class gMLPBlock(nn.Module):
    """X + W_out s(GELU(W_in LN(X))): one gMLP block, eq. (gmlp) of chapter 11.

    Shapes: forward(X (B, n, d)) -> (B, n, d), with d = num_hiddens and the unit's
    width d_ff = ffn_num_hiddens; n <= seq_len.
    """

    def __init__(self, seq_len: int, num_hiddens: int, ffn_num_hiddens: int) -> None:
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        self.norm = nn.LayerNorm(num_hiddens)
        self.proj_in = nn.Linear(num_hiddens, ffn_num_hiddens)
        self.sgu = SpatialGatingUnit(seq_len, ffn_num_hiddens)
        self.proj_out = nn.Linear(ffn_num_hiddens // 2, num_hiddens)

    def forward(self, X: Tensor) -> Tensor:
        """Pre-norm residual block; only the unit mixes positions."""
        Z = torch.nn.functional.gelu(self.proj_in(self.norm(X)))  # (B, n, d_ff)
        return X + self.proj_out(self.sgu(Z))  # (B, n, d_ff / 2) -> (B, n, d)
