"""Tests of companion.station_attention (chapter 15) and of its experiment's helpers."""
import pytest
import torch

import companion
from companion.experiments import station_attention as exp
from companion.station_attention import (AdaptiveAdjacency, StationAttention, adaptive_adjacency,
                                         station_deviations)
from companion.tasks.stations import StationWindows, make_station_data, split_by_day, station_windows


def small_data(num_days=6, window=3):
    data = make_station_data(num_stations=6, num_days=num_days, steps_per_day=12, num_sources=2, seed=0)
    windows = station_windows(data.series, window, data.steps_per_day)
    train, test = split_by_day(windows, num_days - 2)
    return data, train, test, exp.historical_average(train, data.steps_per_day)


def test_adaptive_adjacency_is_a_row_softmax_of_relu_scores():
    gen = torch.Generator().manual_seed(0)
    E1, E2 = torch.randn(7, 3, generator=gen), torch.randn(7, 3, generator=gen)
    A = adaptive_adjacency(E1, E2)
    expected = torch.stack([torch.softmax(torch.clamp(E1[i] @ E2.T, min=0), dim=0) for i in range(7)])
    torch.testing.assert_close(A, expected)
    torch.testing.assert_close(A.sum(-1), torch.ones(7))


def test_adaptive_adjacency_with_a_mask_gives_masked_pairs_no_weight():
    E = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    others = ~torch.eye(5, dtype=torch.bool)
    A = AdaptiveAdjacency(5, 4)
    A.E1.data, A.E2.data = E, E.flip(0)
    weights = A(others)
    assert (weights.diagonal() == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))


def test_adaptive_adjacency_rejects_mismatched_embeddings():
    with pytest.raises(ValueError, match="same shape"):
        adaptive_adjacency(torch.ones(4, 3), torch.ones(4, 2))


def test_deviations_are_relative_to_the_cycle_of_each_past_step_and_zero_when_missing():
    profile = torch.arange(24.0).reshape(4, 6)  # 4 steps a day, 6 stations
    X = torch.full((2, 6, 3), 50.0)
    X[0, 1, 2] = 0.0  # missing
    step = torch.tensor([1, 3])
    dev = station_deviations(X, step, profile, 10.0)
    # target step 1 reads steps 2, 3, 0 (the day before wraps round); step 3 reads 0, 1, 2
    for b, past in ((0, [2, 3, 0]), (1, [0, 1, 2])):
        torch.testing.assert_close(dev[b], ((X[b] - profile[past].T) / 10).where(X[b] != 0, 0.0))
    assert dev[0, 1, 2] == 0


@pytest.mark.parametrize("adaptive", [False, True])
def test_model_shapes_weights_and_no_attention_to_itself(adaptive):
    _, train, _, profile = small_data()
    model = StationAttention(profile, 3, num_hiddens=8, adaptive=adaptive)
    out = model(train.X[:5], train.step[:5])
    assert out.shape == (5, 6)
    w = model.attention_weights
    assert w.shape == (5, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(5, 6))
    assert (w.diagonal(dim1=1, dim2=2) == 0).all()


def test_untrained_model_predicts_the_historical_average():
    _, train, _, profile = small_data()
    model = StationAttention(profile, 3)
    torch.testing.assert_close(model(train.X, train.step), profile[train.step])


def test_model_is_equivariant_to_relabelling_stations_with_their_readings():
    _, train, _, profile = small_data()
    model = StationAttention(profile, 3, num_hiddens=8)
    with torch.no_grad():
        model.readout.normal_()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    permuted = StationAttention(profile[:, perm], 3, num_hiddens=8)
    permuted.load_state_dict({**model.state_dict(), "profile": profile[:, perm],
                              "station.weight": model.station.weight[perm],
                              "readout": model.readout[perm], "bias": model.bias[perm]})
    with torch.no_grad():
        torch.testing.assert_close(permuted(train.X[:, perm], train.step), model(train.X, train.step)[:, perm])


def test_model_rejects_wrong_inputs():
    _, train, _, profile = small_data()
    model = StationAttention(profile, 3)
    with pytest.raises(ValueError, match="num_stations"):
        model(train.X[:, :4], train.step)
    with pytest.raises(ValueError, match="integer"):
        model(train.X, train.step.float())
    with pytest.raises(ValueError, match="profile"):
        StationAttention(profile[0], 3)


def test_baselines():
    _, train, test, profile = small_data()
    assert profile.shape == (12, 6)
    # the historical average of a step is the mean of its observed readings
    step, i = 5, 2
    picked = train.Y[(train.step == step) & (train.Y[:, i] != 0), i]
    torch.testing.assert_close(profile[step, i], picked.mean())
    X = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(exp.last_value(X, torch.tensor([[9.0, 9.0]])), torch.tensor([[4.0, 9.0]]))
    lr = exp.linear_regression_baseline(train, test, profile)
    assert lr.shape == test.Y.shape
    assert exp.masked_scores(lr, test.Y)["MAE"] < exp.masked_scores(profile[test.step], test.Y)["MAE"]


def test_linear_regression_recovers_an_exact_linear_rule():
    gen = torch.Generator().manual_seed(0)
    X = 50 + torch.randn(200, 3, 2, generator=gen)
    step = torch.zeros(200, dtype=torch.long)
    Y = 50 + 10 * (0.3 * (X[:, 1, 1] - 50) / 10 - 0.2 * (X[:, 2, 0] - 50) / 10)[:, None].expand(200, 3).clone()
    data = StationWindows(X, Y, step, torch.zeros(200, dtype=torch.long))
    profile = torch.full((1, 3), 50.0)
    torch.testing.assert_close(exp.linear_regression_baseline(data, data, profile, ridge=1e-8), Y,
                               atol=1e-3, rtol=0)


def test_parent_weight_and_daily_mae():
    weights = torch.tensor([[[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.1, 0.9, 0.0]]]).expand(4, 3, 3)
    parents = torch.tensor([[False, True, False], [False, False, False], [True, True, False]])
    on = exp.parent_weight(weights, parents)
    torch.testing.assert_close(on[[0, 2]], torch.tensor([0.7, 1.0]))
    assert torch.isnan(on[1])
    preds, Y = torch.ones(4, 2), torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 0.0], [5.0, 1.0]])
    per_day = exp.daily_mae(preds, Y, torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(per_day[0, 0], torch.tensor(1.5))
    assert torch.isnan(per_day[0, 1]) and per_day[1].tolist() == [4.0, 0.0]


def test_training_finds_the_parents_and_permuting_the_others_hardly_matters():
    # A short run of chapter 15's experiment on a smaller network: the weight goes to the parents.
    data = make_station_data(num_stations=6, num_days=30, num_sources=2, seed=0)
    train, test = split_by_day(station_windows(data.series, 4, data.steps_per_day), 24)
    profile = exp.historical_average(train, data.steps_per_day)
    model, losses = exp.train_station_attention(train, profile, num_epochs=150, lr=0.05, device="cpu",
                                                progress=False)
    assert losses[-1] < 0.7 * losses[0]
    _, weights = exp.predict_stations(model, test.X, test.step)
    children = data.parents.any(-1)
    assert exp.parent_weight(weights, data.parents)[children].mean() > 0.8
    moved = exp.permutation_change(model, test, data.parents)
    moved_all = exp.permutation_change(model, test, data.parents, parents_too=True)
    assert moved[children].mean() < 0.2 * moved_all[children].mean()


def test_names_are_reachable_from_the_package():
    for name in ("StationAttention", "AdaptiveAdjacency", "adaptive_adjacency", "make_station_data",
                 "masked_mae", "train_station_attention", "load_traffic_readings", "load_graph_data"):
        assert hasattr(companion, name), name
