"""Long-range tasks whose distance can be chosen (chapter 10).

``make_recall_data``: a sequence of random tokens, one of them marked; the answer,
read at the last position, is the marked token. Its distance from the end is
the distance the model must carry it. ``make_adding_data``: the adding problem
(Hochreiter and Schmidhuber, 1997): two marked numbers in [0, 1] to add up.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..utils import check_positive_int

__all__ = ["make_recall_data", "recall_tags", "make_adding_data", "adding_baseline_mse"]


def _check_recall(num_examples: int, n: int, vocab_size: int,
                  max_distance: int) -> None:
    for name, value in [("num_examples", num_examples), ("n", n),
                        ("vocab_size", vocab_size), ("max_distance", max_distance)]:
        check_positive_int(name, value)
    if max_distance > n - 1:
        raise ValueError(f"max_distance must be at most n - 1 = {n - 1}, "
                         f"got {max_distance}")


def make_recall_data(num_examples: int, n: int, vocab_size: int, *,
                     max_distance: int | None = None,
                     seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Recall the marked token at the last position (chapter 10).

    Shapes: -> X (N, n) token ids, y (N,), distance (N,). Position j holds a token
    t in 0..V-1, or V + t where it is the marked one; y is the marked token t and
    distance = n - 1 - (its position), uniform in 1..max_distance (default n - 1).
    """
    max_distance = n - 1 if max_distance is None else max_distance
    _check_recall(num_examples, n, vocab_size, max_distance)
    gen = torch.Generator().manual_seed(seed)
    X = torch.randint(vocab_size, (num_examples, n), generator=gen)  # (N, n)
    distance = torch.randint(1, max_distance + 1, (num_examples,), generator=gen)
    rows, where = torch.arange(num_examples), n - 1 - distance  # where: (N,)
    y = X[rows, where].clone()
    X[rows, where] += vocab_size  # the mark: the same token, shifted by V
    return X, y, distance


def recall_tags(y: Tensor, n: int) -> Tensor:
    """The answers as tags of a sequence: y at the last position, -100 (ignored) else.

    Shapes: y (N,) -> (N, n), for a per-position loss (train_tagger, chapter 8)
    whose cross-entropy skips the targets -100.
    """
    Y = torch.full((y.shape[0], n), -100, dtype=torch.long)
    Y[:, -1] = y
    return Y


def make_adding_data(num_examples: int, n: int, *,
                     seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The adding problem: the sum of the two marked numbers (chapter 10).

    Shapes: -> X (N, n, 2), y (N,), distance (N,). X[..., 0] is uniform in
    [0, 1], X[..., 1] marks one position in the first half and one in the second;
    distance is the number of steps from the first mark to the end.
    """
    check_positive_int("num_examples", num_examples)
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(num_examples, n, generator=gen)  # (N, n)
    half = n // 2
    first = torch.randint(half, (num_examples,), generator=gen)
    second = half + torch.randint(n - half, (num_examples,), generator=gen)
    marks = torch.zeros(num_examples, n)
    rows = torch.arange(num_examples)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, marks], dim=-1), y, n - 1 - first


def adding_baseline_mse() -> float:
    """MSE of always predicting the mean 1 in the adding problem: Var(u1 + u2) = 1/6.

    (The figure 0.1767 quoted by Le et al., 2015, is their measured baseline.)
    """
    return 2 / 12
