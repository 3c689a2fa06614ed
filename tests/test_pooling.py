"""Tests for companion.pooling: kernels, Nadaraya-Watson pooling and its learnable form (chapters 2-3)."""
import math

import pytest
import torch

from companion import (
    KERNELS,
    NWKernelRegression,
    average_pooling,
    boxcar_kernel,
    epanechnikov_kernel,
    gaussian_kernel,
    leave_one_out,
    nadaraya_watson,
    nadaraya_watson_weights,
)

KERNEL_NAMES = ["gaussian", "boxcar", "epanechnikov"]


def scalar_kernel(name, u):
    """Each kernel written from its textbook definition, for one float."""
    if name == "gaussian":
        return math.exp(-u * u / 2)
    if name == "boxcar":
        return 1.0 if abs(u) <= 1 else 0.0
    return 0.75 * (1 - u * u) if abs(u) <= 1 else 0.0


def brute_force_nw(queries, keys, values, name, h):
    """Nadaraya-Watson with Python loops; keys/values either shared lists or one list per query."""
    preds, weights = [], []
    for i, q in enumerate(queries):
        ks = keys[i] if isinstance(keys[0], list) else keys
        vs = values[i] if isinstance(values[0], list) else values
        k = [scalar_kernel(name, (q - key) / h) for key in ks]
        total = sum(k)
        row = [kj / total for kj in k]
        weights.append(row)
        preds.append(sum(a * v for a, v in zip(row, vs)))
    return torch.tensor(preds, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)


@pytest.fixture
def toy():
    gen = torch.Generator().manual_seed(0)
    keys = torch.sort(torch.rand(12, generator=gen, dtype=torch.float64) * 5).values  # (12,)
    values = torch.sin(keys) + 0.1 * torch.randn(12, generator=gen, dtype=torch.float64)  # (12,)
    queries = torch.linspace(0.5, 4.5, 7, dtype=torch.float64)  # (7,)
    return queries, keys, values


# --- kernels ---------------------------------------------------------------

def test_gaussian_kernel_matches_closed_form():
    u = torch.tensor([-2.0, 0.0, 0.5, 3.0])
    torch.testing.assert_close(gaussian_kernel(u), torch.exp(-u**2 / 2))


def test_boxcar_kernel_is_one_inside_window_inclusive():
    u = torch.tensor([-1.5, -1.0, 0.0, 0.99, 1.0, 1.01])
    assert boxcar_kernel(u).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_epanechnikov_kernel_matches_closed_form_and_is_zero_outside():
    u = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    expected = torch.tensor([0.0, 0.0, 0.5625, 0.75, 0.5625, 0.0, 0.0])
    torch.testing.assert_close(epanechnikov_kernel(u), expected)


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernels_keep_shape(name):
    u = torch.randn(2, 3, 4)
    assert KERNELS[name](u).shape == (2, 3, 4)


def test_kernels_registry_names_the_three_kernels():
    assert KERNELS == {"gaussian": gaussian_kernel, "boxcar": boxcar_kernel, "epanechnikov": epanechnikov_kernel}


# --- average pooling -------------------------------------------------------

def test_average_pooling_gives_every_query_the_mean(toy):
    queries, _, values = toy
    out = average_pooling(queries, values)
    assert out.shape == queries.shape
    torch.testing.assert_close(out, torch.full_like(queries, values.mean().item()))


def test_average_pooling_rejects_empty_values():
    with pytest.raises(ValueError, match=r"at least one value, got shape \(0,\)"):
        average_pooling(torch.zeros(3), torch.zeros(0))


# --- Nadaraya-Watson -------------------------------------------------------

@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_nadaraya_watson_matches_brute_force_with_shared_keys(toy, name):
    queries, keys, values = toy
    h = 0.9  # wide enough that every query has a key inside the compact kernels' window
    y_hat, weights = nadaraya_watson(queries, keys, values, kernel=name, bandwidth=h)
    ref_y, ref_w = brute_force_nw(queries.tolist(), keys.tolist(), values.tolist(), name, h)
    torch.testing.assert_close(weights, ref_w)
    torch.testing.assert_close(y_hat, ref_y)
    torch.testing.assert_close(nadaraya_watson_weights(queries, keys, kernel=name, bandwidth=h), ref_w)


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_nadaraya_watson_matches_brute_force_with_per_query_keys(toy, name):
    queries, keys, values = toy
    gen = torch.Generator().manual_seed(1)
    perm = torch.stack([torch.randperm(12, generator=gen)[:9] for _ in range(7)])  # (7, 9)
    q_keys, q_values = keys[perm], values[perm]  # (7, 9) each: a different key set per query
    h = 1.5
    y_hat, weights = nadaraya_watson(queries, q_keys, q_values, kernel=name, bandwidth=h)
    ref_y, ref_w = brute_force_nw(queries.tolist(), q_keys.tolist(), q_values.tolist(), name, h)
    assert weights.shape == (7, 9)
    torch.testing.assert_close(weights, ref_w)
    torch.testing.assert_close(y_hat, ref_y)


def test_nadaraya_watson_accepts_a_callable_kernel(toy):
    queries, keys, values = toy
    cauchy = lambda u: 1 / (1 + u**2)  # noqa: E731
    weights = nadaraya_watson_weights(queries, keys, kernel=cauchy, bandwidth=0.5)
    expected = cauchy((queries[:, None] - keys) / 0.5)
    torch.testing.assert_close(weights, expected / expected.sum(-1, keepdim=True))


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_weights_are_non_negative_and_rows_sum_to_one(toy, name):
    queries, keys, _ = toy
    weights = nadaraya_watson_weights(queries, keys, kernel=name, bandwidth=1.2)
    assert weights.shape == (7, 12)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, dtype=torch.float64))


def test_tiny_bandwidth_reproduces_nearest_training_target(toy):
    queries, keys, values = toy
    y_hat, weights = nadaraya_watson(queries, keys, values, bandwidth=1e-4)
    nearest = (queries[:, None] - keys).abs().argmin(dim=-1)  # (7,)
    assert not torch.isnan(weights).any()
    torch.testing.assert_close(y_hat, values[nearest])


def test_tiny_bandwidth_in_float32_gives_no_nan():
    y_hat, _ = nadaraya_watson(torch.tensor([0.3]), torch.tensor([0.0, 1.0]), torch.tensor([5.0, 7.0]),
                               bandwidth=1e-6)
    assert y_hat.tolist() == [5.0]


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_huge_bandwidth_equals_average_pooling(toy, name):
    queries, keys, values = toy
    y_hat, _ = nadaraya_watson(queries, keys, values, kernel=name, bandwidth=1e6)
    torch.testing.assert_close(y_hat, average_pooling(queries, values))


def test_nadaraya_watson_rejects_mismatched_keys_and_values():
    with pytest.raises(ValueError, match=r"same shape, got keys \(50,\) and values \(49,\)"):
        nadaraya_watson(torch.zeros(3), torch.zeros(50), torch.zeros(49))


def test_weights_reject_per_query_keys_with_wrong_row_count():
    with pytest.raises(ValueError, match=r"\(n_q, n_k\) = \(3, n_k >= 1\), got keys \(4, 5\)"):
        nadaraya_watson_weights(torch.zeros(3), torch.zeros(4, 5))


def test_weights_reject_queries_that_are_not_1d():
    with pytest.raises(ValueError, match=r"queries must be 1-D \(n,\), got shape \(3, 1\)"):
        nadaraya_watson_weights(torch.zeros(3, 1), torch.zeros(5))


@pytest.mark.parametrize("h", [0.0, -1.0])
def test_weights_reject_non_positive_bandwidth(h):
    with pytest.raises(ValueError, match=f"bandwidth must be > 0, got {h}"):
        nadaraya_watson_weights(torch.zeros(3), torch.zeros(5), bandwidth=h)


def test_weights_reject_unknown_kernel():
    with pytest.raises(ValueError, match="kernel must be one of .* got 'triangle'"):
        nadaraya_watson_weights(torch.zeros(3), torch.zeros(5), kernel="triangle")


@pytest.mark.parametrize("name", ["boxcar", "epanechnikov"])
def test_weights_reject_queries_with_empty_window(name):
    queries = torch.tensor([0.0, 10.0, 20.0])  # the last two are far from every key
    keys = torch.tensor([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="2 of 3 queries have no key .* use a larger bandwidth"):
        nadaraya_watson_weights(queries, keys, kernel=name, bandwidth=0.5)


# --- leave-one-out ---------------------------------------------------------

def test_leave_one_out_rows_exclude_exactly_their_own_pair():
    x = torch.arange(5.0)
    y = 10 * x
    keys, values = leave_one_out(x, y)
    assert keys.shape == values.shape == (5, 4)
    for i in range(5):
        others = [j for j in range(5) if j != i]
        assert keys[i].tolist() == x[others].tolist()
        assert values[i].tolist() == y[others].tolist()


def test_leave_one_out_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same shape, got x_train \(5,\) and y_train \(4,\)"):
        leave_one_out(torch.zeros(5), torch.zeros(4))


def test_leave_one_out_needs_two_pairs():
    with pytest.raises(ValueError, match="at least 2 training pairs, got 1"):
        leave_one_out(torch.zeros(1), torch.zeros(1))


# --- NWKernelRegression ----------------------------------------------------

def test_nw_kernel_regression_has_one_parameter_initialised_to_inverse_bandwidth():
    model = NWKernelRegression(bandwidth=0.25)
    params = list(model.parameters())
    assert len(params) == 1 and params[0] is model.w
    assert model.w.shape == (1,)
    assert model.w.item() == pytest.approx(4.0)


def test_nw_kernel_regression_bandwidth_is_inverse_abs_w():
    model = NWKernelRegression(bandwidth=0.5)
    assert model.bandwidth == pytest.approx(0.5)
    with torch.no_grad():
        model.w.fill_(-4.0)  # the score squares w, so its sign does not matter
    assert model.bandwidth == pytest.approx(0.25)


def test_nw_kernel_regression_rejects_non_positive_bandwidth():
    with pytest.raises(ValueError, match="bandwidth must be > 0, got 0"):
        NWKernelRegression(bandwidth=0)


def test_nw_kernel_regression_equals_nadaraya_watson_with_per_query_keys(toy):
    _, x, y = toy
    keys, values = leave_one_out(x, y)  # (12, 11) each
    model = NWKernelRegression(bandwidth=0.7).double()
    out = model(x, keys, values)
    ref_y, ref_w = nadaraya_watson(x, keys, values, kernel="gaussian", bandwidth=0.7)
    assert out.shape == (12,)
    torch.testing.assert_close(out, ref_y)
    torch.testing.assert_close(model.attention_weights, ref_w)


def test_nw_kernel_regression_expands_shared_keys(toy):
    queries, keys, values = toy
    model = NWKernelRegression(bandwidth=0.7).double()
    out = model(queries, keys, values)
    ref_y, _ = nadaraya_watson(queries, keys, values, bandwidth=0.7)
    assert model.attention_weights.shape == (7, 12)
    torch.testing.assert_close(out, ref_y)


def test_nw_kernel_regression_bmm_equals_explicit_loop(toy):
    queries, keys, values = toy
    model = NWKernelRegression(bandwidth=1.3).double()
    out = model(queries, keys, values)
    w = model.w.item()
    expected = []
    for q in queries.tolist():
        scores = [-((q - k) * w) ** 2 / 2 for k in keys.tolist()]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        expected.append(sum(e * v for e, v in zip(exps, values.tolist())) / sum(exps))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_nw_kernel_regression_passes_gradient_to_w(toy):
    queries, keys, values = toy
    model = NWKernelRegression().double()
    model(queries, keys, values).sum().backward()
    assert model.w.grad is not None and model.w.grad.abs().item() > 0


def test_nw_kernel_regression_rejects_mismatched_keys_and_values():
    with pytest.raises(ValueError, match=r"same shape, got keys \(3, 4\) and values \(3, 5\)"):
        NWKernelRegression()(torch.zeros(3), torch.zeros(3, 4), torch.zeros(3, 5))
