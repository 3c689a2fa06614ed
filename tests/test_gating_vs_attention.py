"""Chapter 11's experiment: four models of about the same size, and the weights each produces."""

from __future__ import annotations

import pytest
import torch

from companion.experiments.gating_vs_attention import (
    KINDS, build_tagger, compare_taggers, count_parameters, mixing_weights)
from companion.tasks.synthetic import make_rank_data


def test_the_four_models_have_about_the_same_size():
    sizes = [count_parameters(build_tagger(kind, 16, 8, 8)) for kind in KINDS]
    assert max(sizes) / min(sizes) < 1.15, sizes
    for kind in KINDS:
        assert build_tagger(kind, 16, 8, 8)(torch.randint(0, 16, (2, 8))).shape == (2, 8, 8)
    with pytest.raises(ValueError, match="kind must be"):
        build_tagger("CNN", 16, 8, 8)


@pytest.fixture(scope="module")
def short_run():
    X, Y = make_rank_data(512, seed=1)
    Xt, Yt = make_rank_data(128, seed=2)
    return compare_taggers((X, Y, Xt, Yt), num_seeds=2, num_steps=30, progress=False,
                           device=torch.device("cpu")), Xt


def test_compare_gives_one_accuracy_per_seed_and_model(short_run):
    results, _ = short_run
    assert set(results) == set(KINDS)
    for r in results.values():
        assert len(r["accuracy"]) == 2 and all(0 <= a <= 1 for a in r["accuracy"])
        assert r["parameters"] == count_parameters(r["model"])


def test_mixing_weights_gates_do_not_compete_softmax_does(short_run):
    results, Xt = short_run
    weights = mixing_weights({k: r["model"] for k, r in results.items()}, Xt[0])
    assert weights["attention"].shape == (8, 8) and weights["gMLP"].shape == (8, 8)
    torch.testing.assert_close(weights["attention"].sum(-1), torch.ones(8))
    assert (weights["attention"] >= 0).all()
    for name in ("LSTM forget", "LSTM input", "GRU update", "GRU reset"):
        gate = weights[name]
        assert gate.shape[0] == 8 and ((gate > 0) & (gate < 1)).all()
        assert (gate.sum(-1) - 1).abs().max() > 0.5  # not a distribution over the units


def test_mixing_weights_gates_come_from_the_trained_rnn(short_run):
    results, Xt = short_run
    model = results["LSTM"]["model"]
    weights = mixing_weights({"LSTM": model}, Xt[0])
    # Rebuild the forget gate at step 0 from nn.LSTM's weights: sigmoid of the f block with H = 0.
    E = model.embedding(Xt[0, :1])  # (1, E)
    f = slice(model.rnn.hidden_size, 2 * model.rnn.hidden_size)
    expected = torch.sigmoid(E @ model.rnn.weight_ih_l0[f].T + model.rnn.bias_ih_l0[f]
                             + model.rnn.bias_hh_l0[f])
    torch.testing.assert_close(weights["LSTM forget"][0], expected[0].detach(), atol=1e-6, rtol=0)
