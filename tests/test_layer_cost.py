"""Chapter 10's layers and cost experiments: shapes, counted steps, the counts of Table 1, the fitted slopes."""
from __future__ import annotations

import pytest
import torch

from companion.experiments.layer_cost import (COST_KINDS, build_layer, build_recall_models,
                                              layer_multiply_adds, memory_against_length,
                                              recall_accuracy_by_distance, time_against_length)
from companion.layer_types import (AttentionSequenceStack, ConvSequenceStack, RecurrentSequenceLayer,
                                   count_sequential_steps)
from companion.measure import loglog_slope


@pytest.mark.parametrize("kind", COST_KINDS)
def test_every_layer_keeps_the_shape(kind):
    X = torch.randn(2, 9, 16)
    assert build_layer(kind, 16)(X).shape == (2, 9, 16)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_step_by_step_recurrence_equals_the_fused_layer(kind):
    torch.manual_seed(0)
    layer = RecurrentSequenceLayer(5, 7, kind)
    X = torch.randn(3, 11, 5)
    fused = layer(X)
    layer.cell = True
    torch.testing.assert_close(layer(X), fused, atol=1e-5, rtol=1e-4)


def test_sequential_steps_are_counted():
    X = torch.randn(1, 37, 8)
    assert count_sequential_steps(RecurrentSequenceLayer(8, 8, cell=True), X) == 37
    assert count_sequential_steps(RecurrentSequenceLayer(8, 8), X) == 37
    assert count_sequential_steps(ConvSequenceStack(8, 3), X) == 3
    assert count_sequential_steps(build_layer("attention", 8), X) == 1
    assert count_sequential_steps(AttentionSequenceStack(8, 2, 2, max_len=40), X) == 2


def test_dilated_stack_reaches_k_to_the_l_positions():
    stack = ConvSequenceStack(1, 3, kernel_size=3, dilation_base=3)
    X = torch.zeros(1, 41, 1, requires_grad=True)
    stack(X)[0, 20, 0].backward()
    assert int((X.grad[0, :, 0] != 0).sum()) <= 27
    assert [c.dilation[0] for c in stack.convs] == [1, 3, 9]


def test_multiply_adds_follow_table_1():
    att = layer_multiply_adds("attention", 100, 8)
    assert att == {"mixing": 2 * 100 * 100 * 8, "projections": 4 * 100 * 8 * 8}
    assert layer_multiply_adds("gru", 10, 4)["mixing"] == 6 * 10 * 16
    assert layer_multiply_adds("convolution", 10, 4, kernel_size=5)["mixing"] == 5 * 10 * 16
    local = layer_multiply_adds("restricted", 50, 8, window=3)
    assert local["mixing"] == 2 * 7 * 50 * 8
    # Attention's scores equal its projections at n = 2d.
    eq = layer_multiply_adds("attention", 64, 32)
    assert eq["mixing"] == eq["projections"]
    with pytest.raises(ValueError, match="kind"):
        layer_multiply_adds("pooling", 4, 4)


def test_time_against_length_slopes_on_this_machine():
    # The convolution's time on a shared CPU is the noisiest (the chapter checks it); the LSTM stands for n.
    short, long = [256, 512, 1024], [1024, 2048, 4096]
    attention = time_against_length(["attention"], short, d=64, batch_size=4, repeats=3)["attention"]
    lstm = time_against_length(["lstm"], long, d=64, batch_size=4, repeats=3)["lstm"]
    slopes = {"attention": loglog_slope(short, attention), "lstm": loglog_slope(long, lstm)}
    assert slopes["attention"] > 1.4, slopes
    assert 0.4 < slopes["lstm"] < 1.6, slopes


def test_memory_grows_like_n_squared_for_attention_and_like_n_for_the_others():
    lengths = [512, 2048]
    memory = memory_against_length(["convolution", "gru", "attention"], lengths, d=64, batch_size=4)
    slopes = {k: loglog_slope(lengths, m) for k, m in memory.items()}
    assert slopes["attention"] > 1.7, (memory, slopes)
    assert 0.6 < slopes["gru"] < 1.4, (memory, slopes)
    assert 0.4 < slopes["convolution"] < 1.4, (memory, slopes)


def test_recall_models_have_about_the_same_size_and_tag_every_position():
    models = build_recall_models(12, 4)
    sizes = [sum(p.numel() for p in m.parameters()) for m in models.values()]
    assert max(sizes) / min(sizes) < 1.25
    X = torch.randint(8, (3, 12))
    for model in models.values():
        assert model(X).shape == (3, 12, 4)
    distances, acc = recall_accuracy_by_distance(models["GRU"], X, torch.zeros(3, dtype=torch.long),
                                                 torch.tensor([1, 2, 2]))
    assert distances == [1, 2] and len(acc) == 2
