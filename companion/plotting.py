"""Figures shared by the chapters (PNG): weight bars, attention heat maps, regression
fits, loss curves, alignments."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from .tasks.regression import RegressionData

__all__ = [
    "set_figsize", "show_heatmaps", "plot_weight_bars", "plot_kernel_regression",
    "plot_losses", "show_alignment",
]


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a tensor, array or sequence of numbers, "
            f"got {type(x).__name__}"
        ) from err


def set_figsize(figsize: tuple[float, float] = (3.5, 2.5)) -> None:
    """Set matplotlib's default figure size, as d2l does (all chapters)."""
    if len(figsize) != 2 or min(figsize) <= 0:
        raise ValueError(
            f"figsize must be (width, height) with positive entries, got {figsize!r}"
        )
    plt.rcParams["figure.figsize"] = tuple(figsize)


def show_heatmaps(
    matrices,
    xlabel: str,
    ylabel: str,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] = (2.5, 2.5),
    cmap: str = "Reds",
) -> Figure:
    """Grid of attention heat maps with one shared colorbar (d2l signature), chapter 2.

    Shapes: matrices (rows, cols, n_q, n_k), (cols, n_q, n_k) or (n_q, n_k).
    """
    m = _to_numpy(matrices, "matrices")
    if m.ndim == 2:
        m = m[None, None]  # (n_q, n_k) -> (1, 1, n_q, n_k)
    elif m.ndim == 3:
        m = m[None]  # (cols, n_q, n_k) -> (1, cols, n_q, n_k)
    elif m.ndim != 4:
        raise ValueError(
            "matrices must be 2-D (n_q, n_k), 3-D (cols, n_q, n_k) "
            f"or 4-D (rows, cols, n_q, n_k), got shape {m.shape}"
        )
    num_rows, num_cols = m.shape[:2]
    if titles is not None and len(titles) != num_cols:
        raise ValueError(
            f"titles must hold one title per column ({num_cols}), got {len(titles)}"
        )
    fig, axes = plt.subplots(
        num_rows,
        num_cols,
        figsize=(figsize[0] * num_cols, figsize[1] * num_rows),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    # One colour scale for all panels, so panels can be compared by eye.
    vmin, vmax = float(np.nanmin(m)), float(np.nanmax(m))
    for i in range(num_rows):
        for j in range(num_cols):
            ax = axes[i, j]
            image = ax.imshow(m[i, j], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None:
                ax.set_title(titles[j])
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6)
    return fig


def plot_kernel_regression(
    data: RegressionData,
    y_hat,
    *,
    label: str = "prediction",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Truth, prediction on the test grid and training points, chapters 2-3.

    Shapes: y_hat (n_test,).
    """
    if not isinstance(data, RegressionData):
        raise ValueError(f"data must be a RegressionData, got {type(data).__name__}")
    y = _to_numpy(y_hat, "y_hat")
    if y.shape != tuple(data.x_test.shape):
        raise ValueError(
            f"y_hat must have the shape of data.x_test {tuple(data.x_test.shape)}, "
            f"got {y.shape}"
        )
    if ax is None:
        _, ax = plt.subplots()
    x_test = _to_numpy(data.x_test, "x_test")
    ax.plot(x_test, _to_numpy(data.y_test, "y_test"), label="truth")
    ax.plot(x_test, y, "--", label=label)
    x_train = _to_numpy(data.x_train, "x_train")
    y_train = _to_numpy(data.y_train, "y_train")
    ax.plot(x_train, y_train, "o", alpha=0.5, markersize=3, label="training data")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title is not None:
        ax.set_title(title)
    ax.legend()
    return ax


def plot_losses(
    losses: Sequence[float],
    *,
    ax: Axes | None = None,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    log: bool = False,
) -> Axes:
    """Training loss per epoch, as returned by train(), chapter 3.

    Shapes: losses (num_epochs,).
    """
    y = _to_numpy(losses, "losses")
    if y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"losses must be a non-empty 1-D sequence, got shape {y.shape}"
        )
    if ax is None:
        _, ax = plt.subplots()
    ax.plot(np.arange(1, y.size + 1), y)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    return ax


def plot_weight_bars(
    weights: Tensor,
    key_labels: Sequence[str] | None = None,
    series_labels: Sequence[str] | None = None,
    *,
    xlabel: str = "key",
    ylabel: str = "attention weight",
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Grouped bars of the weight each key gets, one colour per series, chapter 1.

    Shapes: weights (n_k,) or (n_series, n_k).
    """
    w = torch.as_tensor(weights).detach().cpu().double()
    if w.dim() == 1:
        w = w.unsqueeze(0)  # one series
    if w.dim() != 2:
        raise ValueError(
            f"weights must be (n_k,) or (n_series, n_k), got shape {tuple(w.shape)}"
        )
    n_series, n_k = w.shape
    if key_labels is not None and len(key_labels) != n_k:
        raise ValueError(
            f"expected {n_k} key labels (one per column of weights), "
            f"got {len(key_labels)}"
        )
    if series_labels is not None and len(series_labels) != n_series:
        raise ValueError(
            f"expected {n_series} series labels (one per row of weights), "
            f"got {len(series_labels)}"
        )
    if ax is None:
        # Wide enough for one label per key.
        _, ax = plt.subplots(figsize=(max(3.5, 0.6 * n_k + 1.5), 2.5))
    width = 0.8 / n_series  # the group of bars of one key fills 80% of its slot
    for s in range(n_series):
        offsets = [i - 0.4 + width * (s + 0.5) for i in range(n_k)]
        label = series_labels[s] if series_labels is not None else None
        ax.bar(offsets, w[s].tolist(), width=width, label=label)
    ax.set_xticks(range(n_k))
    if key_labels is not None:
        ax.set_xticklabels(list(key_labels))
    else:
        ax.set_xticklabels([str(i) for i in range(n_k)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    if series_labels is not None:
        ax.legend(fontsize="small")
    return ax


def show_alignment(
    weights: Tensor,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    *,
    ax: Axes | None = None,
    cmap: str = "Reds",
    title: str | None = None,
) -> Axes:
    """Heat map of one example's attention weights, characters as ticks (chapter 5).

    Shapes: weights (T_tgt, T_src) with T_tgt = len(tgt_tokens), T_src =
    len(src_tokens).
    """
    w = _to_numpy(weights, "weights")
    T_tgt, T_src = len(tgt_tokens), len(src_tokens)
    if w.shape != (T_tgt, T_src):
        raise ValueError(
            f"weights must have shape (len(tgt_tokens), len(src_tokens)) = "
            f"({T_tgt}, {T_src}), got {w.shape}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(0.22 * T_src + 1, 0.22 * T_tgt + 0.8))
    ax.imshow(w, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    show = {" ": "␣", "<eos>": "⏎"}  # a space tick would be invisible
    ax.set_xticks(range(T_src), [show.get(t, t) for t in src_tokens], fontsize=7)
    ax.set_yticks(range(T_tgt), [show.get(t, t) for t in tgt_tokens], fontsize=7)
    ax.set_xlabel("input characters")
    ax.set_ylabel("output characters")
    if title is not None:
        ax.set_title(title, fontsize=8)
    return ax
