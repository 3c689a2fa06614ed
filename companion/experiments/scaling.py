"""Chapter 4's experiments: why scaled dot-product attention divides by sqrt(d).

Score variance, softmax entropy and the size of the softmax's gradient against the
query/key size d, with and without the scaling. And ``run_fused_attention``, the
target ``peak_memory`` measures for the fused kernel's (B, h, n, d) layout.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention import fused_dot_product_attention
from ..metrics import attention_entropy
from ..utils import check_positive_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "softmax_jacobian_norm", "scaling_experiment", "plot_scaling_experiment",
    "run_fused_attention",
]


def softmax_jacobian_norm(weights: Tensor) -> Tensor:
    """Frobenius norm of d softmax / d scores, J = diag(p) - p p^T (chapter 4).

    Shapes: weights (..., n_k) -> (...).
    """
    p = weights
    jac = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., n_k, n_k)
    return torch.linalg.matrix_norm(jac)


def scaling_experiment(
    dims: Sequence[int], n_keys: int = 16, n_samples: int = 256, seed: int = 0
) -> dict[str, Tensor]:
    """Score variance, softmax entropy and gradient size against d (chapter 4).

    Shapes: dims, a list of sizes d -> dict of tensors with one entry per d: "dims",
    "var_raw", "var_scaled", "entropy_raw", "entropy_scaled", "grad_raw", "grad_scaled".
    Queries and keys have independent N(0, 1) entries; each of the N = n_samples samples
    scores one query against n_k = n_keys keys. Entropy and gradient norm are means over
    the samples.
    """
    _check_sizes(dims, n_keys, n_samples)
    gen = torch.Generator().manual_seed(seed)
    rows: dict[str, list[float]] = {
        f"{measure}_{tag}": []
        for measure in ("var", "entropy", "grad") for tag in ("raw", "scaled")
    }
    for d in dims:
        f64 = torch.float64
        q = torch.randn(n_samples, 1, d, generator=gen, dtype=f64)  # (N, 1, d)
        k = torch.randn(n_samples, n_keys, d, generator=gen, dtype=f64)  # (N, n_k, d)
        raw = (q * k).sum(-1)  # (N, n_k): one score per (query, key) pair
        for tag, scores in (("raw", raw), ("scaled", raw / math.sqrt(d))):
            p = F.softmax(scores, dim=-1)  # (N, n_k)
            rows[f"var_{tag}"].append(scores.var().item())
            rows[f"entropy_{tag}"].append(attention_entropy(p).mean().item())
            rows[f"grad_{tag}"].append(softmax_jacobian_norm(p).mean().item())
    out = {k: torch.tensor(v, dtype=torch.float64) for k, v in rows.items()}
    out["dims"] = torch.tensor([int(d) for d in dims])
    return out


def _check_sizes(dims: Sequence[int], n_keys: int, n_samples: int) -> None:
    if len(dims) == 0 or any(int(d) < 1 for d in dims):
        raise ValueError(
            f"dims must be a non-empty list of positive ints, got {list(dims)!r}"
        )
    if n_keys < 2 or n_samples < 2:
        raise ValueError(
            f"n_keys and n_samples must be >= 2, got {n_keys} and {n_samples}"
        )


def plot_scaling_experiment(
    result: dict[str, Tensor],
    n_keys: int = 16,
    figsize: tuple[float, float] = (9.0, 2.6),
) -> "Figure":
    """Three panels against d: score variance, softmax entropy, gradient norm (ch. 4).

    Shapes: result as returned by scaling_experiment -> a matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    d = result["dims"].numpy()
    fig, axes = plt.subplots(1, 3, figsize=figsize, constrained_layout=True)
    panels = (
        ("var", "variance of the scores", True),
        ("entropy", "mean softmax entropy (nats)", False),
        ("grad", r"mean $\|\partial \alpha / \partial s\|_F$", True),
    )
    for ax, (key, ylabel, logy) in zip(axes, panels):
        ax.plot(d, result[f"{key}_raw"].numpy(), "o-", label=r"$q^\top k$")
        ax.plot(d, result[f"{key}_scaled"].numpy(), "s--", label=r"$q^\top k/\sqrt{d}$")
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("d (query/key size)")
        ax.set_ylabel(ylabel)
    axes[1].axhline(math.log(n_keys), color="gray", lw=0.8, ls=":",
                    label=r"uniform, $\log n$")
    axes[1].legend(fontsize=7)
    return fig


def run_fused_attention(
    n: int, d: int = 64, heads_axis: bool = True, seed: int = 0, device: str = "cpu"
) -> None:
    """One fused self-attention of n random positions: peak_memory's target (ch. 4).

    Shapes: queries, keys and values (1, n, d) -> (1, n, d), without autograd.
    heads_axis=True calls fused_dot_product_attention, which hands the kernel
    (B, h, n, d) = (1, 1, n, d); False hands F.scaled_dot_product_attention (1, n, d).
    """
    check_positive_int("n", n)
    check_positive_int("d", d)
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, n, d, generator=gen).to(device) for _ in range(3))
    with torch.no_grad():
        if heads_axis:
            fused_dot_product_attention(q, k, v)
        else:
            F.scaled_dot_product_attention(q, k, v)
