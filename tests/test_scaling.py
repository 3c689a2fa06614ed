"""Chapter 4's experiment (companion.experiments.scaling): why divide by sqrt(d)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from companion.experiments.scaling import (plot_scaling_experiment, scaling_experiment,  # noqa: E402
                                           softmax_jacobian_norm)
from conftest import rand  # noqa: E402


def test_softmax_jacobian_norm_equals_autograd():
    scores = rand(5)
    jac = torch.autograd.functional.jacobian(lambda s: F.softmax(s, dim=-1), scores)  # (5, 5)
    torch.testing.assert_close(softmax_jacobian_norm(F.softmax(scores, dim=-1)), torch.linalg.matrix_norm(jac))
    # Batched: one norm per row.
    p = F.softmax(rand(3, 4, seed=1), dim=-1)
    assert softmax_jacobian_norm(p).shape == (3,)


def test_scaling_experiment_shows_why_we_divide_by_sqrt_d():
    dims = [2, 16, 128, 1024]
    r = scaling_experiment(dims, n_keys=16, n_samples=200, seed=0)
    d = torch.tensor(dims, dtype=torch.float64)
    # Raw scores have variance about d; scaled ones about 1.
    assert ((r["var_raw"] / d - 1).abs() < 0.2).all(), r["var_raw"]
    assert ((r["var_scaled"] - 1).abs() < 0.2).all(), r["var_scaled"]
    # Without scaling the softmax saturates (entropy and gradient collapse); with it they stay put.
    assert (torch.diff(r["entropy_raw"]) < 0).all() and r["entropy_raw"][-1] < 0.15 * math.log(16)
    assert (torch.diff(r["grad_raw"][1:]) < 0).all() and r["grad_raw"][-1] < 0.25 * r["grad_scaled"][-1]
    assert (r["entropy_scaled"] - r["entropy_scaled"].mean()).abs().max() < 0.1
    assert (r["grad_scaled"] - r["grad_scaled"].mean()).abs().max() < 0.03


def test_scaling_experiment_is_seeded_and_validates():
    a = scaling_experiment([4, 8], n_samples=20, seed=5)
    b = scaling_experiment([4, 8], n_samples=20, seed=5)
    assert all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(ValueError, match="dims"):
        scaling_experiment([])
    with pytest.raises(ValueError, match="n_keys"):
        scaling_experiment([4], n_keys=1)


def test_plot_scaling_experiment_labels_every_axis():
    fig = plot_scaling_experiment(scaling_experiment([2, 4, 8], n_samples=10))
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
        assert len(ax.lines) >= 2
    plt.close(fig)
