"""The long-range tasks: the recall task's marks and answers, the adding problem's baseline."""
from __future__ import annotations

import pytest
import torch

from companion.tasks.long_range import adding_baseline_mse, make_adding_data, make_recall_data, recall_tags


def test_recall_answer_is_the_marked_token_at_its_distance():
    X, y, distance = make_recall_data(500, 12, 5, seed=3)
    assert X.shape == (500, 12) and y.shape == distance.shape == (500,)
    marked = X >= 5
    assert torch.equal(marked.sum(1), torch.ones(500, dtype=torch.long))  # one mark per sequence
    where = marked.long().argmax(1)
    assert torch.equal(11 - where, distance)
    assert torch.equal(X[torch.arange(500), where] - 5, y)
    assert distance.min() >= 1 and distance.max() <= 11
    assert set(distance.tolist()) == set(range(1, 12))  # every distance occurs


def test_recall_is_reproducible_and_respects_max_distance():
    a = make_recall_data(50, 10, 4, max_distance=3, seed=1)
    b = make_recall_data(50, 10, 4, max_distance=3, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert a[2].max() <= 3
    with pytest.raises(ValueError, match="max_distance"):
        make_recall_data(5, 10, 4, max_distance=10)


def test_recall_tags_ignore_every_position_but_the_last():
    Y = recall_tags(torch.tensor([2, 0]), 4)
    assert Y.tolist() == [[-100, -100, -100, 2], [-100, -100, -100, 0]]


def test_adding_problem_targets_and_mean_baseline():
    X, y, distance = make_adding_data(20000, 30, seed=0)
    assert X.shape == (20000, 30, 2)
    assert torch.equal(X[..., 1].sum(1), torch.full((20000,), 2.0))
    assert torch.allclose((X[..., 0] * X[..., 1]).sum(1), y)
    assert (X[:, :15, 1].sum(1) == 1).all()  # one mark in each half
    mse = ((y - 1.0) ** 2).mean().item()
    assert abs(mse - adding_baseline_mse()) < 0.01 and abs(adding_baseline_mse() - 1 / 6) < 1e-12
    assert distance.min() >= 15 and distance.max() <= 29
