"""Tests of companion.metrics: entropy and effective neighbours of attention weights, roughness of curves."""
import math

import pytest
import torch

from companion import attention_entropy, effective_neighbours, roughness


def test_entropy_of_uniform_weights_is_log_n():
    weights = torch.full((3, 8), 1 / 8)
    torch.testing.assert_close(attention_entropy(weights), torch.full((3,), math.log(8)))


def test_entropy_of_one_hot_weights_is_zero_not_nan():
    weights = torch.eye(5)
    entropy = attention_entropy(weights)
    assert not torch.isnan(entropy).any()
    torch.testing.assert_close(entropy, torch.zeros(5))


def test_entropy_matches_a_loop_over_rows():
    weights = torch.softmax(torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = torch.tensor(
        [[-sum(w * math.log(w) for w in row.tolist()) for row in batch] for batch in weights]
    )
    torch.testing.assert_close(attention_entropy(weights), expected)


def test_effective_neighbours_counts_keys_sharing_the_weight():
    weights = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(effective_neighbours(weights), torch.tensor([4.0, 1.0, 2.0]))


def test_roughness_is_zero_for_a_line_and_sums_squared_second_differences():
    assert roughness(torch.linspace(0, 3, 10)) == pytest.approx(0.0, abs=1e-10)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])  # second differences -2, 2
    assert roughness(y) == pytest.approx(8.0)


@pytest.mark.parametrize("bad", [torch.tensor(1.0), torch.zeros(3, 0)])
def test_weight_measures_reject_tensors_without_a_key_axis(bad):
    with pytest.raises(ValueError, match=r"weights must be a tensor \(\.\.\., n_k\)"):
        attention_entropy(bad)
    with pytest.raises(ValueError, match=r"weights must be a tensor \(\.\.\., n_k\)"):
        effective_neighbours(bad)


def test_roughness_rejects_short_or_2d_curves():
    with pytest.raises(ValueError, match=r"y must be a 1-D tensor \(n,\) with n >= 3, got \(2,\)"):
        roughness(torch.zeros(2))
    with pytest.raises(ValueError, match=r"got \(2, 3\)"):
        roughness(torch.zeros(2, 3))
