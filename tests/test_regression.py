"""Tests for companion.tasks.regression: the toy regression problem of chapters 2-3."""
import math

import pytest
import torch

from companion import RegressionData, make_regression_data, target_function


def test_target_function_matches_closed_form():
    x = torch.tensor([0.0, 1.0, 2.5, 4.9])
    expected = torch.tensor([2 * math.sin(v) + v**0.8 for v in x.tolist()])
    torch.testing.assert_close(target_function(x), expected)


def test_make_regression_data_has_right_shapes_and_dtype():
    data = make_regression_data(n_train=30, n_test=20)
    assert isinstance(data, RegressionData)
    assert data.x_train.shape == data.y_train.shape == (30,)
    assert data.x_test.shape == data.y_test.shape == (20,)
    assert data.n_train == 30 and data.n_test == 20
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        assert t.dtype == torch.float32


def test_make_regression_data_is_reproducible_per_seed():
    a, b = make_regression_data(seed=1), make_regression_data(seed=1)
    c = make_regression_data(seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_make_regression_data_sorts_training_inputs_within_range():
    data = make_regression_data(n_train=200, x_max=3.0)
    assert torch.all(data.x_train[1:] >= data.x_train[:-1])
    assert data.x_train.min() >= 0 and data.x_train.max() < 3.0


def test_make_regression_data_test_grid_is_evenly_spaced():
    data = make_regression_data(n_test=50, x_max=5.0)
    torch.testing.assert_close(data.x_test, torch.arange(0, 5.0, 0.1))


def test_make_regression_data_keeps_n_test_points_despite_rounding():
    # torch.arange(0, 5, 5 / 61) yields 62 points through rounding.
    assert make_regression_data(n_test=61).x_test.shape == (61,)


def test_make_regression_data_test_targets_are_noise_free():
    data = make_regression_data()
    torch.testing.assert_close(data.y_test, target_function(data.x_test))


def test_make_regression_data_noise_has_requested_scale():
    data = make_regression_data(n_train=4000, noise=0.3)
    residual = data.y_train - target_function(data.x_train)
    assert abs(residual.std().item() - 0.3) < 0.03
    assert abs(residual.mean().item()) < 0.03
    clean = make_regression_data(noise=0.0)
    torch.testing.assert_close(clean.y_train, target_function(clean.x_train))


def test_make_regression_data_leaves_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_regression_data(seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_train": 0}, "n_train must be a positive int, got 0"),
        ({"n_test": -3}, "n_test must be a positive int, got -3"),
        ({"noise": -0.1}, r"noise must be >= 0, got -0.1"),
        ({"x_max": 0.0}, r"x_max must be > 0, got 0.0"),
    ],
)
def test_make_regression_data_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_regression_data(**kwargs)
