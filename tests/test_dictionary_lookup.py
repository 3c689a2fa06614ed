"""Brody et al.'s dictionary lookup: complete bipartite dictionaries, one-hot features, the value under each
query's own key as its label."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from companion.tasks.dictionary_lookup import lookup_majority_accuracy, make_dictionary_lookup


def test_shapes_and_node_layout() -> None:
    data = make_dictionary_lookup(k=3, num_graphs=5)
    assert data.X.shape == (30, 7) and data.edge_index.shape == (2, 45) and data.k == 3
    assert data.query.tolist() == ([True] * 3 + [False] * 3) * 5
    assert (data.X.sum(1) == 2).all()  # one key, one value (or "no value")
    assert (data.X[data.query, -1] == 1).all() and (data.X[~data.query, -1] == 0).all()


def test_every_key_node_has_an_edge_to_every_query_of_its_own_dictionary_only() -> None:
    k, N = 4, 6
    data = make_dictionary_lookup(k=k, num_graphs=N)
    src, dst = data.edge_index
    assert (~data.query[src]).all() and data.query[dst].all()
    assert torch.equal(src // (2 * k), dst // (2 * k))
    assert len(set(zip(src.tolist(), dst.tolist()))) == k * k * N
    assert torch.bincount(dst, minlength=2 * k * N)[data.query].eq(k).all()


def test_a_query_s_label_is_the_value_stored_under_its_key() -> None:
    k = 5
    data = make_dictionary_lookup(k=k, num_graphs=20, seed=3)
    keys, values = data.X[:, :k].argmax(1), data.X[:, k:].argmax(1)
    for q in data.query.nonzero().flatten().tolist():
        g = q // (2 * k)
        key_nodes = range(g * 2 * k + k, (g + 1) * 2 * k)
        (owner,) = [v for v in key_nodes if keys[v] == keys[q]]
        assert data.y[q] == values[owner]
    assert (data.y[~data.query] == -100).all()


def test_values_are_drawn_independently_and_fixed_by_the_seed() -> None:
    a, b = make_dictionary_lookup(seed=0), make_dictionary_lookup(seed=0)
    assert torch.equal(a.X, b.X) and not torch.equal(a.X, make_dictionary_lookup(seed=1).X)
    values = a.y[a.query].view(-1, a.k)
    # Not permutations: some dictionary stores a value twice.
    assert any(len(set(row.tolist())) < a.k for row in values)


def test_majority_accuracy_counts_the_most_common_value_per_dictionary() -> None:
    data = make_dictionary_lookup(k=4, num_graphs=30, seed=2)
    values = data.y[data.query].view(-1, 4).tolist()
    expected = sum(Counter(row).most_common(1)[0][1] / 4 for row in values) / len(values)
    assert lookup_majority_accuracy(data) == pytest.approx(expected)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="k"):
        make_dictionary_lookup(k=0)
    with pytest.raises(ValueError, match="num_graphs"):
        make_dictionary_lookup(num_graphs=0)
