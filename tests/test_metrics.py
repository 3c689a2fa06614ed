"""Tests of companion.metrics: entropy and effective neighbours of attention weights, roughness of curves."""
import math

import pytest
import torch

from companion.metrics import accuracy_by_length, attention_entropy, effective_neighbours, permutation_gap, roughness


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


def test_permutation_gap_rejects_what_is_not_a_permutation():
    X = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match=r"permutation of 0\.\.3"):
        permutation_gap(lambda Z: Z, X, torch.tensor([0, 1, 1, 3]))
    with pytest.raises(ValueError, match="3-D"):
        permutation_gap(lambda Z: Z, torch.zeros(4, 2), torch.arange(4))
    assert permutation_gap(lambda Z: Z.flip(1), X + torch.arange(4.0)[None, :, None], torch.tensor([1, 0, 2, 3])) > 0


def test_accuracy_by_length_buckets():
    correct = torch.tensor([True, False, True, True, False, True])
    lengths = torch.tensor([8, 9, 12, 15, 30, 31])
    labels, acc, counts = accuracy_by_length(correct, lengths, [8, 10, 20, 40, 50])
    assert labels == ["8-9", "10-19", "20-39", "40-49"]
    assert torch.equal(counts, torch.tensor([2, 2, 2, 0]))
    torch.testing.assert_close(acc[:3], torch.tensor([0.5, 1.0, 0.5]))
    assert torch.isnan(acc[3])
    with pytest.raises(ValueError, match="increasing"):
        accuracy_by_length(correct, lengths, [10, 10])
    with pytest.raises(ValueError, match="same shape"):
        accuracy_by_length(correct, lengths[:3], [0, 50])
