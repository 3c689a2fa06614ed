"""scikit-learn's bundled 8x8 digits as image tensors, on a fixed split (chapter 13).

``load_digits_split`` returns the 1,797 images of ``sklearn.datasets.load_digits``
(real handwriting, no download) as a float tensor (N, 1, 8, 8) in [0, 1], cut once
and for all into a stratified training and test split: every run of the course sees
the same test images. ``stratified_subset`` keeps a fraction of the training images,
the same fraction of every class, for the chapter's data-amount curve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..utils import check_non_negative_int

__all__ = ["DigitsSplit", "load_digits_split", "stratified_subset"]


@dataclass
class DigitsSplit:
    """Training and test images with their labels (chapter 13).

    Shapes: X_train (N, 1, 8, 8) float in [0, 1], y_train (N,) int64 in 0..9; the
    same for X_test, y_test.
    """

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """The 8x8 digits, split so that each class is test_fraction test images (ch. 13).

    Shapes: -> DigitsSplit with X (N, 1, 8, 8). Pixel values 0..16 are divided by 16.
    The split depends on seed only (the course uses seed 0 everywhere).
    """
    _check_split_args(test_fraction, seed)
    from sklearn.datasets import load_digits  # bundled with scikit-learn
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.long)  # (N,)
    train, test = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                   stratify=digits.target, random_state=seed)
    train, test = torch.as_tensor(np.sort(train)), torch.as_tensor(np.sort(test))
    return DigitsSplit(X[train], y[train], X[test], y[test])


def _check_split_args(test_fraction: object, seed: object) -> None:
    if not isinstance(test_fraction, float) or not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be a float in (0, 1), "
                         f"got {test_fraction!r}")
    check_non_negative_int("seed", seed)


def stratified_subset(y: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Indices of about fraction of the examples of each class, at random (ch. 13).

    Shapes: y (N,) labels -> (kept,) int64 indices into y, sorted; at least one
    example of each class present in y.
    """
    _check_subset_args(y, fraction)
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()  # (N_label,)
        count = max(1, round(fraction * len(members)))
        keep.append(members[torch.randperm(len(members), generator=gen)[:count]])
    return torch.sort(torch.cat(keep)).values


def _check_subset_args(y: object, fraction: object) -> None:
    if not isinstance(y, Tensor) or y.dim() != 1 or y.is_floating_point():
        raise ValueError(f"y must be a 1-D tensor of integer labels, got {y!r:.60}")
    if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
