"""The toy regression of chapters 2-3: y = 2 sin(x) + x^0.8 plus noise, as in d2l."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..utils import check_positive_int

__all__ = ["target_function", "RegressionData", "make_regression_data"]


def target_function(x: Tensor) -> Tensor:
    """The noise-free target f(x) = 2 sin(x) + x^0.8, chapter 2.

    Shapes: x (...) -> (...).
    """
    # x**0.8 is NaN for x < 0; the course only samples x in [0, x_max).
    return 2 * torch.sin(x) + x**0.8


@dataclass
class RegressionData:
    """Training pairs and a noise-free test grid, chapter 2.

    Shapes: x_train, y_train (n,); x_test, y_test (n_test,).
    """

    x_train: Tensor  # (n,) sorted inputs
    y_train: Tensor  # (n,) noisy targets
    x_test: Tensor  # (n_test,) evenly spaced inputs
    y_test: Tensor  # (n_test,) noise-free truth f(x_test)

    @property
    def n_train(self) -> int:
        """Number of training pairs n, chapter 2."""
        return self.x_train.numel()

    @property
    def n_test(self) -> int:
        """Number of test points, chapter 2."""
        return self.x_test.numel()


def make_regression_data(
    n_train: int = 50,
    n_test: int = 50,
    noise: float = 0.5,
    x_max: float = 5.0,
    seed: int = 0,
) -> RegressionData:
    """Sample chapter 2's data set with its own generator (the global RNG is untouched).

    Shapes: -> x_train, y_train (n_train,); x_test, y_test (n_test,).
    """
    check_positive_int("n_train", n_train)
    check_positive_int("n_test", n_test)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if x_max <= 0:
        raise ValueError(f"x_max must be > 0, got {x_max!r}")
    gen = torch.Generator().manual_seed(seed)
    x_train, _ = torch.sort(torch.rand(n_train, generator=gen) * x_max)  # (n_train,)
    draws = torch.randn(n_train, generator=gen)  # (n_train,)
    y_train = target_function(x_train) + noise * draws  # (n_train,)
    # arange can overshoot by one element through rounding; slicing keeps n_test points.
    step = x_max / n_test
    x_test = torch.arange(0, x_max, step, dtype=torch.float32)[:n_test]  # (n_test,)
    y_test = target_function(x_test)  # (n_test,)
    return RegressionData(x_train, y_train, x_test, y_test)
