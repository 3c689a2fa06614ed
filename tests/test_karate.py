"""Zachary's karate club as tensors: the graph networkx ships, both directions of each edge, the factions, a
fixed split."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from companion.tasks.karate import karate_club


def test_the_club_has_34_members_and_78_friendships_both_ways() -> None:
    club = karate_club()
    assert club.num_nodes == 34 and torch.equal(club.X, torch.eye(34))
    assert club.edge_index.shape == (2, 156) and club.edge_index.dtype == torch.long
    edges = set(map(tuple, club.edge_index.T.tolist()))
    assert len(edges) == 156 and all((j, i) in edges for i, j in edges)
    assert not any(i == j for i, j in edges)
    assert {tuple(sorted(e)) for e in edges} == {tuple(sorted(e)) for e in nx.karate_club_graph().edges()}


def test_labels_are_the_two_factions_with_the_leaders_on_either_side() -> None:
    club = karate_club()
    graph = nx.karate_club_graph()
    assert club.y.tolist() == [0 if graph.nodes[v]["club"] == "Mr. Hi" else 1 for v in range(34)]
    assert club.y[0] == 0 and club.y[33] == 1 and club.y.bincount().tolist() == [17, 17]


@pytest.mark.parametrize("per_class", [1, 4, 17])
def test_the_split_labels_per_class_members_of_each_faction_leaders_included(per_class: int) -> None:
    club = karate_club(train_per_class=per_class)
    assert club.train_mask[0] and club.train_mask[33]
    assert club.y[club.train_mask].bincount(minlength=2).tolist() == [per_class, per_class]
    assert torch.equal(club.test_mask, ~club.train_mask)


def test_the_split_is_fixed_by_its_seed() -> None:
    assert torch.equal(karate_club(seed=0).train_mask, karate_club(seed=0).train_mask)
    assert not torch.equal(karate_club(seed=0).train_mask, karate_club(seed=1).train_mask)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 17"):
        karate_club(train_per_class=18)
    with pytest.raises(ValueError, match="train_per_class"):
        karate_club(train_per_class=0)
