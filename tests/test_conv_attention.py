"""A convolution as attention (one-hot heads, relative positions) and path lengths by reachability."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from companion.conv_attention import (LAYER_KINDS, conv_as_attention, conv_attention_weights,
                                      conv_offsets, layer_connectivity, max_path_length, reachable,
                                      relative_offset_weights)


@pytest.mark.parametrize("kernel_size, dilation, padding", [(3, 1, 1), (5, 1, 2), (3, 2, 2), (3, 1, 0),
                                                            (1, 1, 0), (4, 1, 1), (3, 3, "same"),
                                                            (3, 1, "valid")])
def test_conv_as_attention_equals_conv1d(kernel_size, dilation, padding):
    torch.manual_seed(0)
    conv = nn.Conv1d(3, 5, kernel_size, dilation=dilation, padding=padding)
    X = torch.randn(2, 13, 3)
    expected = conv(X.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(conv_as_attention(conv, X), expected, atol=1e-6, rtol=0)


def test_conv_as_attention_without_bias():
    conv = nn.Conv1d(2, 2, 3, padding=1, bias=False)
    X = torch.randn(1, 6, 2)
    torch.testing.assert_close(conv_as_attention(conv, X), conv(X.transpose(1, 2)).transpose(1, 2),
                               atol=1e-6, rtol=0)


def test_conv_heads_are_one_hot_and_content_independent():
    conv = nn.Conv1d(2, 4, 3, dilation=2, padding=2)
    A = conv_attention_weights(conv, 8)
    assert A.shape == (3, 8, 12)
    assert torch.equal(A.sum(-1), torch.ones(3, 8))
    assert set(A.unique().tolist()) == {0.0, 1.0}
    # The weights are a function of n alone: the same for any input.
    assert torch.equal(A, conv_attention_weights(conv, 8))
    assert conv_offsets(conv) == [-2, 0, 2]
    for j, offset in enumerate(conv_offsets(conv)):
        rows, cols = A[j].nonzero(as_tuple=True)
        assert torch.equal(cols - 2 - rows, torch.full_like(rows, offset))  # 2: the padding


def test_conv_attention_rejects_what_it_cannot_express():
    with pytest.raises(ValueError, match="stride"):
        conv_attention_weights(nn.Conv1d(2, 2, 3, stride=2), 8)
    with pytest.raises(ValueError, match="groups"):
        conv_attention_weights(nn.Conv1d(2, 2, 3, groups=2), 8)
    with pytest.raises(TypeError, match="Conv1d"):
        conv_attention_weights(nn.Linear(2, 2), 8)
    with pytest.raises(ValueError, match="shorter"):
        conv_attention_weights(nn.Conv1d(2, 2, 5), 3)


def test_relative_offset_weights_tend_to_the_convolution():
    torch.manual_seed(0)
    conv = nn.Conv1d(3, 4, 3, padding=1)
    X = torch.randn(2, 10, 3)
    expected = conv(X.transpose(1, 2)).transpose(1, 2)
    errors = [(conv_as_attention(conv, X, weights=relative_offset_weights([0, 1, 2], 10, 12, a))
               - expected).abs().max().item() for a in (2.0, 6.0, 12.0)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4
    W = relative_offset_weights([0, 1, 2], 10, 12, 3.0)
    torch.testing.assert_close(W.sum(-1), torch.ones(3, 10))
    # Scores depend on m - i only: shifting query and key together leaves the weight unchanged.
    assert torch.allclose(W[:, 2, 3], W[:, 5, 6])


def test_connectivity_of_each_kind():
    n = 9
    assert torch.equal(layer_connectivity("attention", n), torch.ones(n, n, dtype=torch.bool))
    conv = layer_connectivity("convolution", n, kernel_size=5)
    assert conv[4].sum() == 5 and conv[0].sum() == 3
    rec = layer_connectivity("recurrent", n)
    assert rec[4].nonzero().flatten().tolist() == [3, 4]
    dil = layer_connectivity("dilated", n, kernel_size=3, layer=1)
    assert dil[4].nonzero().flatten().tolist() == [1, 4, 7]
    assert layer_connectivity("restricted", n, window=2)[4].sum() == 5
    with pytest.raises(ValueError, match="kind"):
        layer_connectivity("pooling", n)
    with pytest.raises(ValueError, match="odd"):
        layer_connectivity("convolution", n, kernel_size=4)


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_reach_grows_as_table_1_says(num_layers):
    n, mid = 201, 100
    assert reachable("convolution", n, num_layers, kernel_size=3)[mid].sum() == 1 + 2 * num_layers
    assert reachable("convolution", n, num_layers, kernel_size=5)[mid].sum() == 1 + 4 * num_layers
    assert reachable("dilated", n, num_layers, kernel_size=3)[mid].sum() == 3**num_layers
    assert reachable("attention", n, num_layers)[mid].sum() == n
    assert reachable("recurrent", n, num_layers)[mid].sum() == num_layers + 1


def test_reachable_is_the_product_of_the_layers():
    n = 12
    C0 = layer_connectivity("dilated", n, kernel_size=3, layer=0).long()
    C1 = layer_connectivity("dilated", n, kernel_size=3, layer=1).long()
    assert torch.equal(reachable("dilated", n, 2, kernel_size=3), (C1 @ C0) > 0)


@pytest.mark.parametrize("n", [5, 16, 33])
def test_max_path_length_matches_the_formulas(n):
    assert max_path_length("attention", n) == 1
    assert max_path_length("recurrent", n) == n - 1
    assert max_path_length("convolution", n, kernel_size=3) == n - 1
    assert max_path_length("convolution", n, kernel_size=5) == math.ceil((n - 1) / 2)
    assert max_path_length("restricted", n, window=3) == math.ceil((n - 1) / 3)
    assert max_path_length("dilated", n, kernel_size=3) <= math.ceil(math.log(2 * n - 1, 3))
    assert set(LAYER_KINDS) == {"convolution", "dilated", "recurrent", "attention", "restricted"}
