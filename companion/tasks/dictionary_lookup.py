"""Brody et al.'s dictionary lookup (chapter 14): a task that static attention cannot
fit and dynamic attention can.

Each graph is a dictionary of k entries: k key nodes, each holding a key and its value,
and k query nodes, each holding a key only; every key node has an edge to every query
node (a complete bipartite graph, k * k edges). A query must return the value stored
under its own key, so it must attend to a different key node than the other queries.
Brody, Alon and Yahav (2022), section 4.1, with the features one-hot and one change:
their values are a permutation of the keys, which lets a query read its value off as
the one missing among the other keys' values (no need to find its own key); here each
value is drawn independently, so only the own key tells.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils import check_positive_int

__all__ = ["DictionaryLookup", "make_dictionary_lookup", "lookup_majority_accuracy"]


@dataclass
class DictionaryLookup:
    """Many dictionaries as one graph of disconnected parts (chapter 14).

    Shapes: X (nodes, features), features = 2 k + 1: one-hot key, then one-hot
    value (the last column meaning "no value", set on the queries); edge_index
    (2, edges) from key nodes to query nodes; query (nodes,) bool; y (nodes,)
    int64, the value a query must return (-100 on key nodes, which cross_entropy
    ignores); nodes = 2 k N and edges = k k N for N graphs.
    """

    X: Tensor
    edge_index: Tensor
    query: Tensor
    y: Tensor
    k: int


def make_dictionary_lookup(k: int = 5, num_graphs: int = 48,
                           seed: int = 0) -> DictionaryLookup:
    """num_graphs dictionaries of k keys, values from 0 .. k-1 (ch. 14; Brody 2022).

    Shapes: -> DictionaryLookup with nodes = 2 k N, N = num_graphs. In each graph the
    query nodes come first (keys 0 .. k-1), then the key nodes (keys 0 .. k-1 with
    their values, uniform and independent, from `seed`).
    """
    check_positive_int("k", k)
    check_positive_int("num_graphs", num_graphs)
    N, gen = num_graphs, torch.Generator().manual_seed(seed)
    stored = torch.randint(k, (N, k), generator=gen)  # the value under each key
    keys = torch.arange(k).repeat(N, 2)  # (N, nodes per graph): queries, key nodes
    values = torch.cat([torch.full((N, k), k), stored], dim=1)  # k = "no value"
    X = torch.cat([F.one_hot(keys, k), F.one_hot(values, k + 1)], -1).float()
    y = torch.cat([stored, torch.full((N, k), -100)], dim=1)  # (N, nodes per graph)
    # Every key node (k .. 2k-1) to every query node (0 .. k-1), shifted per graph.
    pairs = torch.tensor(list(itertools.product(range(k, 2 * k), range(k)))).T
    offsets = 2 * k * torch.arange(N)  # (N,)
    edge_index = (pairs[:, None, :] + offsets[None, :, None]).reshape(2, -1)
    query = (torch.arange(2 * k) < k).repeat(N)
    return DictionaryLookup(X=X.reshape(N * 2 * k, -1), edge_index=edge_index,
                            query=query, y=y.reshape(-1), k=k)


def lookup_majority_accuracy(data: DictionaryLookup) -> float:
    """Accuracy of answering every query of a dictionary with its most common value.

    The best any query-blind answer can do (chapter 14): what a model whose attention
    is the same for every query is limited to, up to the sharpness of its softmax.
    Shapes: data.y (nodes,) -> a float.
    """
    values = data.y[data.query].view(-1, data.k)  # (N, entries): each query's value
    counts = F.one_hot(values, data.k).sum(1)  # (N, C): how often each value occurs
    return (counts.max(1).values.float() / data.k).mean().item()
