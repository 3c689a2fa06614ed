"""Checks for the exercises of chapter 2, non-parametric attention pooling (how a check works: companion.exercises)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close
from companion.pooling import gaussian_kernel, leave_one_out, nadaraya_watson

__all__ = [
    "FORBIDDEN",
    "check_gaussian_kernel_values",
    "check_gaussian_kernel_thorough",
    "check_nadaraya_watson_predict_small",
    "check_nadaraya_watson_predict_thorough",
    "check_loo_mse_small",
    "check_loo_mse_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "gaussian_kernel": ["companion.pooling.gaussian_kernel"],
    "nadaraya_watson_predict": [
        "companion.pooling.nadaraya_watson",
        "companion.pooling.nadaraya_watson_weights",
        "companion.pooling.NWKernelRegression",
    ],
    "loo_mse": [],
}

# ---------------------------------------------------------------------------
# Exercise 1: the Gaussian kernel K(u) = exp(-u^2 / 2)
# ---------------------------------------------------------------------------


def _kernel_mistakes(u: Tensor) -> dict[str, Tensor]:
    """What the usual wrong kernels return on ``u``, keyed by the hint that names them."""
    no_half = torch.exp(-(u**2))
    no_minus = torch.exp(u**2 / 2)
    squared_after = torch.exp(-u / 2) ** 2
    halved_outside = torch.exp(-(u**2)) / 2
    density = torch.exp(-(u**2) / 2) / math.sqrt(2 * math.pi)
    absolute = torch.exp(-u.abs() / 2)
    return {
        "you computed exp(-u^2): the exponent needs the factor 1/2, exp(-u**2 / 2).": no_half,
        "you computed exp(u^2 / 2): the exponent needs a minus sign, so that K shrinks as |u| grows.": no_minus,
        "you squared after taking the exponential, exp(-u/2)**2 = exp(-u); square u inside: "
        "exp(-u**2 / 2).": squared_after,
        "you divided by 2 outside the exponential, exp(-u**2) / 2; the 1/2 belongs inside: "
        "exp(-u**2 / 2).": halved_outside,
        "you returned the normal density exp(-u^2/2) / sqrt(2 pi). The constant cancels in the Nadaraya-Watson "
        "weights, but this exercise asks for K(u) = exp(-u^2/2) without it.": density,
        "you computed exp(-|u| / 2) or similar: square u, exp(-u**2 / 2).": absolute,
    }


def _check_kernel_on(gaussian_kernel_fn: Callable[..., Any], u: Tensor, seconds: float) -> None:
    actual = call_on_copies(gaussian_kernel_fn, u, name="gaussian_kernel", seconds=seconds)
    expect_close(actual, gaussian_kernel(u), name="gaussian_kernel", mistakes=_kernel_mistakes(u))


def check_gaussian_kernel_values(gaussian_kernel_fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: K(u) on a handful of values, including u = 0 where K = 1."""
    u = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    _check_kernel_on(gaussian_kernel_fn, u, seconds)


def check_gaussian_kernel_thorough(gaussian_kernel_fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: any shape, float64, symmetry, far tails that must underflow to 0 (not NaN or inf)."""
    gen = torch.Generator().manual_seed(2)
    for shape in [(7,), (3, 4), (2, 3, 5)]:
        _check_kernel_on(gaussian_kernel_fn, 3 * torch.randn(shape, generator=gen), seconds)
    _check_kernel_on(gaussian_kernel_fn, torch.linspace(-4, 4, 9, dtype=torch.float64), seconds)
    # Far tails: K must underflow to exactly 0, not overflow to inf.
    _check_kernel_on(gaussian_kernel_fn, torch.tensor([-1e3, -60.0, 60.0, 1e3]), seconds)


# ---------------------------------------------------------------------------
# Exercise 2: Nadaraya-Watson predictions with the Gaussian kernel
# ---------------------------------------------------------------------------


def _nw(queries: Tensor, keys: Tensor, values: Tensor, bandwidth: float) -> Tensor:
    return nadaraya_watson(queries, keys, values, kernel="gaussian", bandwidth=bandwidth)[0]


def _nw_mistakes(queries: Tensor, keys: Tensor, values: Tensor, h: float) -> dict[str, Tensor]:
    """Predictions (or weights) that the usual mistakes produce, keyed by their hint."""
    u = (queries[:, None] - keys[None, :]) / h  # (n_q, n_k)
    weights = torch.softmax(-(u**2) / 2, dim=-1)  # (n_q, n_k), the right weights
    over_queries = torch.softmax(-(u**2) / 2, dim=0) @ values  # each key's column sums to one
    unnormalised = torch.exp(-(u**2) / 2) @ values
    wrong_sign = torch.softmax(u**2 / 2, dim=-1) @ values
    return {
        "you returned the attention weights (n_q, n_k); return the predictions weights @ values, "
        "shape (n_q,).": weights,
        "the weights are normalised over the queries (dim=0); each query's weights must sum to one over the "
        "keys (dim=-1).": over_queries,
        "you forgot to normalise: divide each K((x - x_i)/h) by the sum over all keys j of "
        "K((x - x_j)/h).": unnormalised,
        "you forgot to divide the differences x - x_i by the bandwidth h.": _nw(queries, keys, values, 1.0),
        "you multiplied the differences by the bandwidth; divide them by it: (x - x_i) / h.": _nw(
            queries, keys, values, 1.0 / h
        ),
        "the exponent lacks the 1/2: the score is -(x - x_i)^2 / (2 h^2).": _nw(
            queries, keys, values, h / math.sqrt(2)
        ),
        "you divided the squared difference by h instead of h^2: the score is -((x - x_i) / h)^2 / 2.": _nw(
            queries, keys, values, math.sqrt(h)
        ),
        "the scores have the wrong sign: the nearest keys must get the largest weights, so use "
        "-(x - x_i)^2.": wrong_sign,
        "you divided by the number of keys again: the weights already sum to one, so just sum "
        "weights * values.": (weights @ values) / keys.numel(),
    }


def _check_nw_on(
    fn: Callable[..., Any], queries: Tensor, keys: Tensor, values: Tensor, h: float, seconds: float
) -> None:
    actual = call_on_copies(fn, queries, keys, values, h, name="nadaraya_watson_predict", seconds=seconds)
    if isinstance(actual, Tensor) and actual.is_floating_point() and torch.isnan(actual).any():
        raise AssertionError(
            f"`nadaraya_watson_predict` returned NaN at bandwidth h = {h:g}: exp(-u^2/2) underflows to 0 for every "
            "key when h is small, and 0/0 = NaN. Compute the weights as torch.softmax(-u**2 / 2, dim=-1), which "
            "subtracts the largest score first."
        )
    expect_close(
        actual,
        _nw(queries, keys, values, h),
        name="nadaraya_watson_predict",
        mistakes=_nw_mistakes(queries, keys, values, h),
    )


def check_nadaraya_watson_predict_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: four queries, five key-value pairs, bandwidth 0.5."""
    queries = torch.tensor([0.5, 1.0, 2.0, 3.5])
    keys = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    values = torch.tensor([1.0, 2.0, 0.0, -1.0, 3.0])
    _check_nw_on(fn, queries, keys, values, 0.5, seconds)


def check_nadaraya_watson_predict_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: random sizes and bandwidths, unsorted keys, one query, float64, the limits h -> 0 and h -> inf."""
    gen = torch.Generator().manual_seed(7)
    for n_q, n_k, h in [(6, 9, 0.3), (1, 4, 2.0), (12, 7, 0.8), (5, 30, 0.15)]:
        queries = 5 * torch.rand(n_q, generator=gen)
        keys = 5 * torch.rand(n_k, generator=gen)  # unsorted on purpose
        values = torch.randn(n_k, generator=gen)
        _check_nw_on(fn, queries, keys, values, h, seconds)
    keys = torch.linspace(0, 5, 11, dtype=torch.float64)
    values = torch.sin(keys)
    _check_nw_on(fn, torch.tensor([0.1, 2.2, 4.9], dtype=torch.float64), keys, values, 0.4, seconds)
    # h -> 0: at a key, its own value; between keys, the nearest key's value. Between keys every
    # exp(-u^2/2) underflows to 0, so only the softmax form gets this right.
    keys = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])
    values = torch.tensor([3.0, -1.0, 2.0, 0.5, 1.0])
    _check_nw_on(fn, keys, keys, values, 0.005, seconds)
    _check_nw_on(fn, torch.tensor([0.2, 0.6, 1.9]), keys, values, 0.005, seconds)
    # h -> inf: every prediction is the average of the values.
    _check_nw_on(fn, torch.tensor([-3.0, 0.7, 9.0]), keys, values, 1e4, seconds)


# ---------------------------------------------------------------------------
# Exercise 3: leave-one-out mean squared error of a bandwidth
# ---------------------------------------------------------------------------


def _loo_mse(x: Tensor, y: Tensor, h: float) -> Tensor:
    keys, values = leave_one_out(x, y)  # (n, n-1) each
    y_hat, _ = nadaraya_watson(x, keys, values, kernel="gaussian", bandwidth=h)  # (n,)
    return ((y_hat - y) ** 2).mean()


def _loo_mistakes(x: Tensor, y: Tensor, h: float) -> dict[str, Tensor]:
    keys, values = leave_one_out(x, y)
    y_loo, _ = nadaraya_watson(x, keys, values, bandwidth=h)  # (n,)
    y_all, _ = nadaraya_watson(x, x, y, bandwidth=h)  # (n,) pair i sees itself
    sq = (y_loo - y) ** 2  # (n,)
    return {
        "pair i was not left out: at x_i its own key is at distance 0 and gets the largest weight, so this is "
        "the training error. Predict y_i from the other n - 1 pairs only.": ((y_all - y) ** 2).mean(),
        "you returned the root of the mean squared error; return the mean squared error itself.": sq.mean().sqrt(),
        "you returned the sum of the squared errors; divide by n to get the mean.": sq.sum(),
        "you returned the n squared errors; return their mean, a single number.": sq,
        "you returned the n predictions; return the mean of (prediction - y_i)^2.": y_loo,
        "you returned the mean absolute error; square the errors instead.": (y_loo - y).abs().mean(),
        "you averaged over n - 1 instead of n: every one of the n pairs is predicted once.": sq.sum() / (x.numel() - 1),
    }


def _as_scalar_tensor(actual: Any) -> Any:
    """Accept a Python number or a one-element tensor for a scalar answer."""
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return torch.tensor(float(actual), dtype=torch.float64)
    if isinstance(actual, Tensor) and actual.numel() == 1:
        return actual.reshape(())
    return actual


def _check_loo_on(fn: Callable[..., Any], x: Tensor, y: Tensor, h: float, seconds: float) -> None:
    actual = _as_scalar_tensor(call_on_copies(fn, x, y, h, name="loo_mse", seconds=seconds))
    if isinstance(actual, Tensor) and actual.is_floating_point() and torch.isnan(actual).any():
        raise AssertionError(
            f"`loo_mse` returned NaN at bandwidth h = {h:g}: either all kernel values underflowed (use torch.softmax "
            "for the weights) or the left-out pair was removed with -inf * 0 (set its score to -inf with "
            "masked_fill instead of multiplying)."
        )
    expect_close(actual, _loo_mse(x, y, h), name="loo_mse", mistakes=_loo_mistakes(x, y, h), rtol=1e-4, atol=1e-5)


def check_loo_mse_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: six training pairs, bandwidth 0.7."""
    x = torch.tensor([0.0, 0.4, 1.1, 1.5, 2.3, 3.0])
    y = torch.tensor([0.5, 1.5, 2.0, 1.0, -0.5, 0.0])
    _check_loo_on(fn, x, y, 0.7, seconds)


def check_loo_mse_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: random data sets of several sizes, unsorted inputs, small and large bandwidths, two pairs."""
    gen = torch.Generator().manual_seed(11)
    for n, h in [(10, 0.3), (25, 1.5), (40, 0.05), (8, 20.0)]:
        x = 5 * torch.rand(n, generator=gen)  # unsorted on purpose
        y = 2 * torch.sin(x) + 0.3 * torch.randn(n, generator=gen)
        _check_loo_on(fn, x, y, h, seconds)
    # Two pairs: each is predicted by the other alone, whatever the bandwidth.
    _check_loo_on(fn, torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0]), 0.5, seconds)
    # A tiny bandwidth: each pair is predicted by its nearest neighbour (needs the softmax form).
    x = torch.tensor([0.0, 0.3, 1.0, 1.2, 2.5])
    _check_loo_on(fn, x, torch.tensor([1.0, 2.0, -1.0, 0.0, 3.0]), 0.01, seconds)
