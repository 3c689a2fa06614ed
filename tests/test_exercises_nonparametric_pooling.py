"""The exercise checks of chapter 2 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import math

import pytest
import torch

import companion
from companion.exercises import nonparametric_pooling as ex

KERNEL_CHECKS = [ex.check_gaussian_kernel_values, ex.check_gaussian_kernel_thorough]
NW_CHECKS = [ex.check_nadaraya_watson_predict_small, ex.check_nadaraya_watson_predict_thorough]
LOO_CHECKS = [ex.check_loo_mse_small, ex.check_loo_mse_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def kernel_ok(u):
    return torch.exp(-(u**2) / 2)


def nw_ok(queries, keys, values, bandwidth):
    scores = -(((queries[:, None] - keys[None, :]) / bandwidth) ** 2) / 2  # (n_q, n_k)
    return torch.softmax(scores, dim=-1) @ values  # (n_q,)


def loo_ok(x, y, bandwidth):
    scores = -(((x[:, None] - x[None, :]) / bandwidth) ** 2) / 2  # (n, n)
    eye = torch.eye(x.numel(), dtype=torch.bool)
    weights = torch.softmax(scores.masked_fill(eye, float("-inf")), dim=-1)  # (n, n), zero diagonal
    return ((weights @ y - y) ** 2).mean()


def loo_with_companion(x, y, bandwidth):
    keys, values = companion.leave_one_out(x, y)
    y_hat, _ = companion.nadaraya_watson(x, keys, values, bandwidth=bandwidth)
    return ((y_hat - y) ** 2).mean()


@pytest.mark.parametrize("check", KERNEL_CHECKS)
def test_kernel_checks_accept_reference(check):
    check(kernel_ok)
    check(companion.gaussian_kernel)


@pytest.mark.parametrize("check", NW_CHECKS)
def test_nw_checks_accept_reference(check):
    check(nw_ok)
    check(lambda q, k, v, h: companion.nadaraya_watson(q, k, v, bandwidth=h)[0])


@pytest.mark.parametrize("check", LOO_CHECKS)
def test_loo_checks_accept_reference(check):
    check(loo_ok)
    check(loo_with_companion)


def test_loo_check_accepts_a_python_float():
    ex.check_loo_mse_small(lambda x, y, h: loo_ok(x, y, h).item())
    ex.check_loo_mse_thorough(lambda x, y, h: float(loo_ok(x, y, h)))


def test_nw_check_accepts_float64_output_for_float32_input():
    ex.check_nadaraya_watson_predict_small(lambda q, k, v, h: nw_ok(q.double(), k.double(), v.double(), h))


# --- diagnosed mistakes -----------------------------------------------------------------------------

KERNEL_MISTAKES = {
    "forgot the half": (lambda u: torch.exp(-(u**2)), r"factor 1/2"),
    "no minus sign": (lambda u: torch.exp(u**2 / 2), r"minus sign"),
    "squared after exp": (lambda u: torch.exp(-u / 2) ** 2, r"squared after taking the exponential"),
    "halved outside exp": (lambda u: torch.exp(-(u**2)) / 2, r"divided by 2 outside"),
    "normal density": (lambda u: torch.exp(-(u**2) / 2) / math.sqrt(2 * math.pi), r"normal density"),
    "absolute value": (lambda u: torch.exp(-u.abs() / 2), r"square u"),
}


@pytest.mark.parametrize("check", KERNEL_CHECKS)
@pytest.mark.parametrize("mistake", sorted(KERNEL_MISTAKES))
def test_kernel_checks_name_the_mistake(check, mistake):
    wrong, hint = KERNEL_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_kernel_check_rejects_in_place_change():
    def in_place(u):
        u.pow_(2).mul_(-0.5).exp_()
        return u

    with pytest.raises(AssertionError, match="in place"):
        ex.check_gaussian_kernel_values(in_place)


def test_kernel_check_rejects_numpy_output():
    with pytest.raises(AssertionError, match="torch.Tensor"):
        ex.check_gaussian_kernel_values(lambda u: kernel_ok(u).numpy())


def test_kernel_hidden_check_catches_shape_specific_bug():
    # Right on 1-D input, wrong on 2-D: only the hidden check sees it.
    def flattens(u):
        return torch.exp(-(u.reshape(-1) ** 2) / 2)

    ex.check_gaussian_kernel_values(flattens)
    with pytest.raises(AssertionError, match="shape"):
        ex.check_gaussian_kernel_thorough(flattens)


def _weights(q, k, h, dim=-1, sign=-1.0):
    return torch.softmax(sign * ((q[:, None] - k[None, :]) / h) ** 2 / 2, dim=dim)


NW_MISTAKES = {
    "returned weights": (lambda q, k, v, h: _weights(q, k, h), r"returned the attention weights"),
    "normalised over queries": (lambda q, k, v, h: _weights(q, k, h, dim=0) @ v, r"normalised over the queries"),
    "no normalisation": (
        lambda q, k, v, h: torch.exp(-(((q[:, None] - k[None, :]) / h) ** 2) / 2) @ v,
        r"forgot to normalise",
    ),
    "no bandwidth": (lambda q, k, v, h: _weights(q, k, 1.0) @ v, r"forgot to divide the differences"),
    "times bandwidth": (
        lambda q, k, v, h: torch.softmax(-(((q[:, None] - k[None, :]) * h) ** 2) / 2, dim=-1) @ v,
        r"multiplied the differences by the bandwidth",
    ),
    "no half": (
        lambda q, k, v, h: torch.softmax(-(((q[:, None] - k[None, :]) / h) ** 2), dim=-1) @ v,
        r"lacks the 1/2",
    ),
    "divided by h not h squared": (
        lambda q, k, v, h: torch.softmax(-((q[:, None] - k[None, :]) ** 2) / (2 * h), dim=-1) @ v,
        r"instead of h\^2",
    ),
    "wrong sign": (lambda q, k, v, h: _weights(q, k, h, sign=1.0) @ v, r"wrong sign"),
    "mean instead of sum": (lambda q, k, v, h: _weights(q, k, h) @ v / k.numel(), r"number of keys again"),
}


@pytest.mark.parametrize("check", NW_CHECKS)
@pytest.mark.parametrize("mistake", sorted(NW_MISTAKES))
def test_nw_checks_name_the_mistake(check, mistake):
    wrong, hint = NW_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_nw_hidden_check_catches_underflow_at_small_bandwidth():
    def naive(q, k, v, h):
        kern = torch.exp(-(((q[:, None] - k[None, :]) / h) ** 2) / 2)  # underflows to 0 for tiny h
        return (kern / kern.sum(dim=-1, keepdim=True)) @ v

    ex.check_nadaraya_watson_predict_small(naive)  # fine at h = 0.5
    with pytest.raises(AssertionError, match=r"NaN at bandwidth h = 0\.005.*softmax"):
        ex.check_nadaraya_watson_predict_thorough(naive)


def test_nw_hidden_check_catches_a_single_query_squeezed_away():
    # squeeze() drops the query axis when there is one query: only the hidden check has n_q = 1.
    def squeezes(q, k, v, h):
        return _weights(q, k, h).squeeze() @ v

    ex.check_nadaraya_watson_predict_small(squeezes)
    with pytest.raises(AssertionError, match=r"returned shape \(\), expected \(1,\)"):
        ex.check_nadaraya_watson_predict_thorough(squeezes)


def test_nw_check_rejects_in_place_change():
    def in_place(q, k, v, h):
        q.div_(h)
        return nw_ok(q, k / h, v, 1.0)

    with pytest.raises(AssertionError, match="in place"):
        ex.check_nadaraya_watson_predict_small(in_place)


LOO_MISTAKES = {
    "not left out": (
        lambda x, y, h: ((nw_ok(x, x, y, h) - y) ** 2).mean(),
        r"was not left out",
    ),
    "root": (lambda x, y, h: loo_ok(x, y, h).sqrt(), r"root of the mean squared error"),
    "sum": (lambda x, y, h: loo_ok(x, y, h) * x.numel(), r"sum of the squared errors"),
    "per example": (
        lambda x, y, h: (torch.softmax(_loo_scores(x, h), dim=-1) @ y - y) ** 2,
        r"returned the n squared errors",
    ),
    "predictions": (lambda x, y, h: torch.softmax(_loo_scores(x, h), dim=-1) @ y, r"returned the n predictions"),
    "absolute": (
        lambda x, y, h: (torch.softmax(_loo_scores(x, h), dim=-1) @ y - y).abs().mean(),
        r"mean absolute error",
    ),
    "n minus one": (lambda x, y, h: loo_ok(x, y, h) * x.numel() / (x.numel() - 1), r"over n - 1 instead of n"),
}


def _loo_scores(x, h):
    scores = -(((x[:, None] - x[None, :]) / h) ** 2) / 2
    return scores.masked_fill(torch.eye(x.numel(), dtype=torch.bool), float("-inf"))


@pytest.mark.parametrize("check", LOO_CHECKS)
@pytest.mark.parametrize("mistake", sorted(LOO_MISTAKES))
def test_loo_checks_name_the_mistake(check, mistake):
    wrong, hint = LOO_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_loo_hidden_check_catches_nan_from_multiplying_by_a_mask():
    def masks_by_multiplying(x, y, h):
        scores = -(((x[:, None] - x[None, :]) / h) ** 2) / 2
        keep = 1 - torch.eye(x.numel())
        weights = torch.softmax(scores + torch.log(keep) * keep, dim=-1)  # -inf * 0 = NaN on the diagonal
        return ((weights @ y - y) ** 2).mean()

    with pytest.raises(AssertionError, match=r"`loo_mse` returned NaN"):
        ex.check_loo_mse_small(masks_by_multiplying)


def test_loo_hidden_check_catches_underflow():
    def naive(x, y, h):
        kern = torch.exp(-(((x[:, None] - x[None, :]) / h) ** 2) / 2) * (1 - torch.eye(x.numel()))
        return ((kern / kern.sum(dim=-1, keepdim=True) @ y - y) ** 2).mean()

    ex.check_loo_mse_small(naive)
    with pytest.raises(AssertionError, match=r"NaN at bandwidth"):
        ex.check_loo_mse_thorough(naive)
