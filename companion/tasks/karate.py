"""Zachary's karate club as tensors (chapter 14): 34 members, 78 friendships, and the
two factions the club split into, from the copy that ships with networkx.

Zachary (1977) watched a university karate club split after a dispute between its
instructor ("Mr. Hi", node 0) and its president ("Officer", node 33); each member's
faction is the node attribute "club". A few members per faction are labelled for
training, the rest are the test set: node classification on one small graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch
from torch import Tensor

from ..utils import check_non_negative_int, check_positive_int

__all__ = ["KarateClub", "karate_club"]

FACTIONS = ("Mr. Hi", "Officer")


@dataclass
class KarateClub:
    """The graph, its labels and a fixed split (chapter 14).

    Shapes: X (nodes, nodes) one-hot node ids, edge_index (2, edges) with both
    directions of every friendship, y (nodes,) int64 (0 = Mr. Hi, 1 = Officer),
    train_mask and test_mask (nodes,) bool.
    """

    X: Tensor
    edge_index: Tensor
    y: Tensor
    train_mask: Tensor
    test_mask: Tensor

    @property
    def num_nodes(self) -> int:
        return self.X.shape[0]


def karate_club(train_per_class: int = 4, seed: int = 0) -> KarateClub:
    """Zachary's club with train_per_class labelled members of each faction (ch. 14).

    Shapes: -> KarateClub with nodes = 34, edges = 156. The two leaders (nodes 0 and
    33) are always labelled; the other labelled members are drawn with `seed`, so a
    split is fixed by (train_per_class, seed).
    """
    check_positive_int("train_per_class", train_per_class)
    check_non_negative_int("seed", seed)
    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    y = torch.tensor([FACTIONS.index(graph.nodes[v]["club"]) for v in range(n)])
    pairs = torch.tensor(sorted(graph.edges())).T  # (2, 78), each friendship once
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)  # (2, 156): both ways
    train_mask = _labelled(y, train_per_class, seed)
    return KarateClub(X=torch.eye(n), edge_index=edge_index, y=y,
                      train_mask=train_mask, test_mask=~train_mask)


def _labelled(y: Tensor, per_class: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(y), dtype=torch.bool)
    for label, leader in ((0, 0), (1, len(y) - 1)):
        others = [int(v) for v in (y == label).nonzero().flatten() if v != leader]
        if per_class > len(others) + 1:
            raise ValueError(f"train_per_class must be at most {len(others) + 1} "
                             f"(the size of the smaller faction), got {per_class}")
        drawn = torch.randperm(len(others), generator=gen)[:per_class - 1]
        mask[[leader] + [others[i] for i in drawn]] = True
    return mask
