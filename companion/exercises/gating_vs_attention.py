"""Checks for the exercises of chapter 11, gating vs attention (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.exercises import call_on_copies, expect_close

__all__ = [
    "FORBIDDEN",
    "check_gru_cell_small",
    "check_gru_cell_thorough",
    "check_spatial_gating_unit_small",
    "check_spatial_gating_unit_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "gru_cell": [
        "companion.gating.GRUCell",
        "torch.nn.GRUCell",
        "torch.nn.GRU",
        "torch.gru_cell",
    ],
    "spatial_gating_unit": ["companion.gmlp.SpatialGatingUnit", "companion.gmlp.gMLPBlock"],
}

# ---------------------------------------------------------------------------
# Exercise 1: one step of PyTorch's GRU, the reset gate after the hidden matmul
# ---------------------------------------------------------------------------


def _gru_parts(X: Tensor, H: Tensor, W_ih: Tensor, W_hh: Tensor, b_ih: Tensor, b_hh: Tensor):
    Xr, Xz, Xn = (X @ W_ih.T + b_ih).chunk(3, dim=-1)  # (B, H) each
    Hr, Hz, Hn = (H @ W_hh.T + b_hh).chunk(3, dim=-1)  # (B, H) each, b_hh included
    return Xr, Xz, Xn, Hr, Hz, Hn


def _gru(X: Tensor, H: Tensor, W_ih: Tensor, W_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    Xr, Xz, Xn, Hr, Hz, Hn = _gru_parts(X, H, W_ih, W_hh, b_ih, b_hh)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    return Z * H + (1 - Z) * torch.tanh(Xn + R * Hn)


def _gru_mistakes(X: Tensor, H: Tensor, W_ih: Tensor, W_hh: Tensor, b_ih: Tensor,
                  b_hh: Tensor) -> dict[str, Tensor]:
    """What the usual wrong GRU steps return, keyed by the hint that names them."""
    Xr, Xz, Xn, Hr, Hz, Hn = _gru_parts(X, H, W_ih, W_hh, b_ih, b_hh)
    R, Z = torch.sigmoid(Xr + Hr), torch.sigmoid(Xz + Hz)
    N = torch.tanh(Xn + R * Hn)
    W_hn, b_hn = W_hh.chunk(3, dim=0)[2], b_hh.chunk(3)[2]
    paper = torch.tanh(Xn + (R * H) @ W_hn.T + b_hn)
    return {
        "you reset the state before the hidden matmul, (R * H) W_hn + b_hn: that is the original "
        "paper's GRU. PyTorch's (the one asked for) resets the product: R * (H W_hn^T + b_hn).": (
            Z * H + (1 - Z) * paper),
        "the bias b_hn is outside the reset: PyTorch resets the whole hidden term, "
        "R * (H W_hn^T + b_hn).": Z * H + (1 - Z) * torch.tanh(Xn + R * (Hn - b_hn) + b_hn),
        "the update gate is used the other way round: PyTorch keeps the old state with Z, "
        "H' = Z * H + (1 - Z) * N.": (1 - Z) * H + Z * N,
        "the reset and update gates are swapped: PyTorch stacks the gates in the order r, z, n "
        "(rows 0:H, H:2H, 2H:3H).": R * H + (1 - R) * torch.tanh(Xn + Z * Hn),
        "there is no reset gate in your candidate: N = tanh(X W_in^T + b_in + R * (H W_hn^T + b_hn)).": (
            Z * H + (1 - Z) * torch.tanh(Xn + Hn)),
        "you returned the candidate N; the new state mixes it with the old one: "
        "Z * H + (1 - Z) * N.": N,
        "the candidate needs tanh, not a sigmoid.": Z * H + (1 - Z) * torch.sigmoid(Xn + R * Hn),
        "the gates need a sigmoid (values in (0, 1)), not tanh.": (
            torch.tanh(Xz + Hz) * H + (1 - torch.tanh(Xz + Hz)) * torch.tanh(
                Xn + torch.tanh(Xr + Hr) * Hn)),
    }


def _check_gru_on(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> None:
    actual = call_on_copies(fn, *args, name="gru_cell", seconds=seconds)
    expect_close(actual, _gru(*args), name="gru_cell", mistakes=_gru_mistakes(*args),
                 atol=1e-5, rtol=1e-4)


def _gru_args(B: int, E: int, H: int, gen: torch.Generator,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    scale = H ** -0.5
    return (
        torch.randn(B, E, generator=gen, dtype=dtype),
        torch.randn(B, H, generator=gen, dtype=dtype),  # a state far from zero, so the reset shows
        torch.randn(3 * H, E, generator=gen, dtype=dtype) * scale,
        torch.randn(3 * H, H, generator=gen, dtype=dtype) * scale * 2,
        torch.randn(3 * H, generator=gen, dtype=dtype),
        torch.randn(3 * H, generator=gen, dtype=dtype),  # biases of size 1: a misplaced one shows
    )


def check_gru_cell_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a batch of 2, input size 3, 4 hidden units."""
    _check_gru_on(fn, _gru_args(2, 3, 4, torch.Generator().manual_seed(0)), seconds)


def check_gru_cell_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: other sizes, one example, float64, and against torch.nn.GRUCell itself."""
    gen = torch.Generator().manual_seed(1)
    for B, E, H in [(5, 7, 6), (1, 2, 3), (3, 6, 6)]:
        _check_gru_on(fn, _gru_args(B, E, H, gen), seconds)
    _check_gru_on(fn, _gru_args(4, 3, 5, gen, dtype=torch.float64), seconds)
    cell = torch.nn.GRUCell(4, 3)
    X, H = torch.randn(2, 4, generator=gen), torch.randn(2, 3, generator=gen)
    args = (X, H, *(p.detach() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)))
    actual = call_on_copies(fn, *args, name="gru_cell", seconds=seconds)
    expect_close(actual, cell(X, H).detach(), name="gru_cell", mistakes=_gru_mistakes(*args))


# ---------------------------------------------------------------------------
# Exercise 2: the spatial gating unit, U * (W LN(V) + b)
# ---------------------------------------------------------------------------


def _ln(T: Tensor) -> Tensor:
    return F.layer_norm(T, T.shape[-1:])


def _sgu(Z: Tensor, W: Tensor, b: Tensor) -> Tensor:
    U, V = Z.chunk(2, dim=-1)  # (B, n, k) each
    return U * (W @ _ln(V) + b[:, None])


def _sgu_mistakes(Z: Tensor, W: Tensor, b: Tensor) -> dict[str, Tensor]:
    """What the usual wrong spatial gating units return, keyed by their hint."""
    U, V = Z.chunk(2, dim=-1)
    n, k = V.shape[-2], V.shape[-1]
    mistakes = {
        "W is transposed: output position i reads sum_j W[i, j] v_j, which is W @ V (W's rows are the "
        "outputs).": U * (W.T @ _ln(V) + b[:, None]),
        "the halves are swapped: U (the first half) is the gate's target, V (the second half) is "
        "normalised and mixed.": V * (W @ _ln(U) + b[:, None]),
        "V is not normalised: apply the layer norm over its features before mixing, W @ LN(V).": (
            U * (W @ V + b[:, None])),
        "the layer norm went over the positions (dim=-2); normalise each position over its features "
        "(the last axis).": U * (W @ F.layer_norm(V.transpose(-1, -2), (n,)).transpose(-1, -2) + b[:, None]),
        "the bias b is missing: one bias per position, W @ LN(V) + b[:, None].": U * (W @ _ln(V)),
        "you added U instead of multiplying by it: the unit gates U element-wise, U * (...).": (
            U + (W @ _ln(V) + b[:, None])),
        "you returned the gate W @ LN(V) + b without applying it to U.": W @ _ln(V) + b[:, None],
        "you normalised U as well; only V goes through the layer norm.": (
            _ln(U) * (W @ _ln(V) + b[:, None])),
    }
    if n == k:  # square halves let a mixing along the wrong axis through without a shape error
        mistakes["W mixes the features, not the positions: multiply from the left, W @ LN(V) with "
                 "V of shape (B, n, k)."] = U * (_ln(V) @ W + b[:, None])
        mistakes["b is added per feature; it is one bias per position: b[:, None] (shape (n, 1))."] = (
            U * (W @ _ln(V) + b))
    return mistakes


def _check_sgu_on(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> None:
    actual = call_on_copies(fn, *args, name="spatial_gating_unit", seconds=seconds)
    expect_close(actual, _sgu(*args), name="spatial_gating_unit", mistakes=_sgu_mistakes(*args),
                 atol=1e-5, rtol=1e-4)


def _sgu_args(B: int, n: int, k: int, gen: torch.Generator,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    Z = 1 + 2 * torch.randn(B, n, 2 * k, generator=gen, dtype=dtype)  # not normalised already
    return Z, torch.randn(n, n, generator=gen, dtype=dtype), torch.randn(n, generator=gen, dtype=dtype)


def check_spatial_gating_unit_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: 2 sequences of 3 positions, halves of 4 features."""
    _check_sgu_on(fn, _sgu_args(2, 3, 4, torch.Generator().manual_seed(0)), seconds)


def check_spatial_gating_unit_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: square halves (n = k), one sequence, float64, the near-identity start."""
    gen = torch.Generator().manual_seed(1)
    for B, n, k in [(3, 5, 5), (1, 6, 2), (4, 2, 7)]:
        _check_sgu_on(fn, _sgu_args(B, n, k, gen), seconds)
    _check_sgu_on(fn, _sgu_args(2, 4, 3, gen, dtype=torch.float64), seconds)
    Z, _, _ = _sgu_args(2, 5, 3, gen)
    # At initialisation (W = 0, b = 1) the unit returns U itself.
    _check_sgu_on(fn, (Z, torch.zeros(5, 5), torch.ones(5)), seconds)
