"""Figures of chapters 1-3 (PNG): attention heat maps, regression fits, loss curves."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data import RegressionData

__all__ = ["set_figsize", "show_heatmaps", "plot_kernel_regression", "plot_losses"]


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
    """Set matplotlib's default figure size, as d2l does (all chapters).

    Shapes: none.
    """
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
