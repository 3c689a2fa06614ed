"""Tests for companion.plotting: heat maps, regression fits and loss curves."""
import matplotlib

matplotlib.use("Agg")  # headless, before pyplot draws anything

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from companion.plotting import (plot_kernel_regression, plot_losses, plot_weight_bars, set_figsize,  # noqa: E402
                                show_alignment, show_heatmaps)
from companion.tasks.regression import make_regression_data  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_show_heatmaps_draws_a_grid_and_one_colorbar():
    fig = show_heatmaps(torch.rand(2, 3, 4, 5), xlabel="keys", ylabel="queries")
    assert isinstance(fig, Figure)
    assert len(image_axes(fig)) == 6
    assert len(fig.axes) == 7  # six heat maps plus one shared colorbar


def test_show_heatmaps_labels_outer_axes_and_sets_titles():
    fig = show_heatmaps(torch.rand(2, 3, 4, 5), xlabel="keys", ylabel="queries", titles=["a", "b", "c"])
    grid = np.array(image_axes(fig)).reshape(2, 3)
    assert [ax.get_xlabel() for ax in grid[1]] == ["keys"] * 3
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["queries"] * 2
    assert [ax.get_title() for ax in grid[0]] == ["a", "b", "c"]


def test_show_heatmaps_accepts_2d_input_as_one_map():
    weights = torch.rand(4, 6, requires_grad=True)
    fig = show_heatmaps(weights, xlabel="keys", ylabel="queries")
    (ax,) = image_axes(fig)
    np.testing.assert_allclose(ax.images[0].get_array(), weights.detach().numpy())
    assert ax.get_xlabel() == "keys" and ax.get_ylabel() == "queries"


def test_show_heatmaps_promotes_3d_input_to_one_row():
    fig = show_heatmaps(np.random.rand(3, 4, 4), xlabel="keys", ylabel="queries")
    assert len(image_axes(fig)) == 3


def test_show_heatmaps_shares_one_colour_scale():
    m = torch.stack([torch.zeros(3, 3), torch.ones(3, 3) * 2]).unsqueeze(0)  # (1, 2, 3, 3)
    fig = show_heatmaps(m, xlabel="k", ylabel="q")
    assert {ax.images[0].get_clim() for ax in image_axes(fig)} == {(0.0, 2.0)}


def test_show_heatmaps_rejects_1d_input():
    with pytest.raises(ValueError, match=r"2-D \(n_q, n_k\).*got shape \(5,\)"):
        show_heatmaps(torch.rand(5), xlabel="keys", ylabel="queries")


def test_show_heatmaps_rejects_wrong_number_of_titles():
    with pytest.raises(ValueError, match=r"one title per column \(3\), got 2"):
        show_heatmaps(torch.rand(1, 3, 2, 2), xlabel="k", ylabel="q", titles=["a", "b"])


def test_plot_kernel_regression_labels_axes_and_draws_three_series():
    data = make_regression_data(n_train=10, n_test=20)
    ax = plot_kernel_regression(data, data.y_test * 0.5, label="NW", title="fit")
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    assert ax.get_title() == "fit"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["truth", "NW", "training data"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), (data.y_test * 0.5).numpy())


def test_plot_kernel_regression_draws_on_given_axes():
    data = make_regression_data(n_train=10, n_test=20)
    _, ax = plt.subplots()
    assert plot_kernel_regression(data, data.y_test, ax=ax) is ax


def test_plot_kernel_regression_rejects_prediction_of_wrong_shape():
    data = make_regression_data(n_train=10, n_test=20)
    with pytest.raises(ValueError, match=r"shape of data.x_test \(20,\), got \(19,\)"):
        plot_kernel_regression(data, torch.zeros(19))


def test_plot_losses_labels_axes_and_plots_one_point_per_epoch():
    ax = plot_losses([3.0, 2.0, 1.5])
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 3]
    assert ax.lines[0].get_ydata().tolist() == [3.0, 2.0, 1.5]
    assert ax.get_yscale() == "linear"


def test_plot_losses_log_scale_and_custom_labels():
    ax = plot_losses([1.0, 0.1], log=True, xlabel="step", ylabel="MSE")
    assert ax.get_yscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "MSE")


def test_plot_losses_rejects_empty_input():
    with pytest.raises(ValueError, match=r"non-empty 1-D sequence, got shape \(0,\)"):
        plot_losses([])


def test_set_figsize_sets_default_figure_size():
    with matplotlib.rc_context():
        set_figsize((4.0, 3.0))
        assert tuple(plt.rcParams["figure.figsize"]) == (4.0, 3.0)


def test_set_figsize_rejects_non_positive_size():
    with pytest.raises(ValueError, match=r"positive entries, got \(0, 2\)"):
        set_figsize((0, 2))


def test_plot_weight_bars_draws_one_bar_per_weight_with_labels():
    w = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    ax = plot_weight_bars(w, ["a", "b", "c"], ["T=1", "T=2"], xlabel="object", title="demo")
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx(sorted(w.flatten().tolist()))
    assert ax.get_xlabel() == "object" and ax.get_ylabel() == "attention weight"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["T=1", "T=2"]
    plt.close(ax.figure)


def test_plot_weight_bars_accepts_one_series_and_rejects_bad_labels():
    ax = plot_weight_bars(torch.tensor([0.3, 0.7]))
    assert len(ax.patches) == 2 and ax.get_legend() is None
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"expected 2 key labels.*got 3"):
        plot_weight_bars(torch.tensor([0.3, 0.7]), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"expected 1 series labels.*got 2"):
        plot_weight_bars(torch.tensor([0.3, 0.7]), series_labels=["x", "y"])
    with pytest.raises(ValueError, match=r"\(n_k,\) or \(n_series, n_k\)"):
        plot_weight_bars(torch.zeros(2, 2, 2))


def test_show_alignment_labels_the_characters():
    w = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = show_alignment(w, ["a", " ", "b", "<eos>"], ["x", "y", "<eos>"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "␣", "b", "⏎"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "⏎"]
    assert ax.get_xlabel() == "input characters" and ax.get_ylabel() == "output characters"
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"\(len\(tgt_tokens\), len\(src_tokens\)\) = \(3, 3\), got \(3, 4\)"):
        show_alignment(w, ["a", "b", "c"], ["x", "y", "z"])
