"""The digits split is fixed, stratified, disjoint and scaled; stratified_subset keeps each class's share."""

from __future__ import annotations

import pytest
import torch

from companion.tasks.digits import load_digits_split, stratified_subset


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_split_shapes_types_and_scale(split) -> None:
    assert split.X_train.shape == (1437, 1, 8, 8) and split.X_test.shape == (360, 1, 8, 8)
    assert split.X_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    for X in (split.X_train, split.X_test):
        assert X.min() == 0.0 and X.max() == 1.0  # 0..16 divided by 16
    assert set(split.y_test.tolist()) == set(range(10))


def test_split_is_fixed_and_depends_on_the_seed(split) -> None:
    again = load_digits_split()
    assert torch.equal(again.X_test, split.X_test) and torch.equal(again.y_train, split.y_train)
    other = load_digits_split(seed=1)
    assert not torch.equal(other.y_test, split.y_test)


def test_split_is_stratified(split) -> None:
    train_counts = torch.bincount(split.y_train, minlength=10).double()
    test_counts = torch.bincount(split.y_test, minlength=10).double()
    share = test_counts / (train_counts + test_counts)
    assert torch.all((share - 0.2).abs() < 0.01), share  # 20% of every class, up to rounding


def test_train_and_test_images_are_the_dataset_without_overlap(split) -> None:
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16
    everything = torch.cat([split.X_train, split.X_test])
    assert len(everything) == len(images)
    key = lambda X: sorted(map(tuple, X.flatten(1).tolist()))  # noqa: E731
    assert key(everything) == key(images)  # every image of the data set, each in one split


@pytest.mark.parametrize("fraction", [0.05, 0.3, 1.0])
def test_stratified_subset_keeps_each_class_share(split, fraction) -> None:
    idx = stratified_subset(split.y_train, fraction, seed=3)
    assert idx.dtype == torch.int64 and torch.equal(idx, torch.sort(idx).values)
    assert len(torch.unique(idx)) == len(idx)
    full, kept = torch.bincount(split.y_train, minlength=10), torch.bincount(split.y_train[idx], minlength=10)
    assert torch.all((kept - fraction * full).abs() <= 0.5 + 1e-9), (kept, full)


def test_stratified_subset_depends_on_seed_and_keeps_every_class() -> None:
    y = torch.tensor([0] * 50 + [1] * 3)
    a, b = stratified_subset(y, 0.1, seed=0), stratified_subset(y, 0.1, seed=1)
    assert not torch.equal(a, b)
    assert set(y[stratified_subset(y, 0.01)].tolist()) == {0, 1}  # at least one per class


@pytest.mark.parametrize("bad", [dict(test_fraction=0.0), dict(test_fraction=1), dict(seed=-1)])
def test_load_digits_split_rejects_bad_arguments(bad) -> None:
    with pytest.raises(ValueError):
        load_digits_split(**bad)


@pytest.mark.parametrize("y, fraction", [(torch.zeros(3), 0.5), (torch.zeros(3, dtype=torch.long), 0.0),
                                         (torch.zeros(3, dtype=torch.long), 1.5)])
def test_stratified_subset_rejects_bad_arguments(y, fraction) -> None:
    with pytest.raises(ValueError):
        stratified_subset(y, fraction)
