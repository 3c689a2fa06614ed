"""Checks for the exercises of chapter 14, attention on graphs (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.exercises import call_on_copies, expect_close, expect_returned

__all__ = [
    "FORBIDDEN",
    "check_gat_score_small",
    "check_gat_score_thorough",
    "check_neighbour_softmax_small",
    "check_neighbour_softmax_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "gat_score": [
        "companion.graph_attention.GATLayer",
    ],
    "neighbour_softmax": [
        "companion.graph_attention.GATLayer",
        "companion.graph_attention.neighbour_mask",
        "companion.graph_attention.edge_weights",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: the GAT score of one edge, LeakyReLU(a^T [W h_i || W h_j])
# ---------------------------------------------------------------------------


def _score(Wh_i: Tensor, Wh_j: Tensor, a: Tensor) -> Tensor:
    return F.leaky_relu(torch.cat([Wh_i, Wh_j], dim=-1) @ a, 0.2)


def _score_mistakes(Wh_i: Tensor, Wh_j: Tensor, a: Tensor) -> dict[str, Tensor]:
    both = torch.cat([Wh_i, Wh_j], dim=-1)
    return {
        "the halves are swapped: the target's W h_i comes first, [W h_i || W h_j], so the first half of `a` "
        "scores the target.": F.leaky_relu(torch.cat([Wh_j, Wh_i], dim=-1) @ a, 0.2),
        "the LeakyReLU has torch's default slope 0.01: GAT uses negative_slope=0.2.":
            F.leaky_relu(both @ a),
        "a ReLU cuts the negative scores to 0: GAT's LeakyReLU keeps them, multiplied by 0.2.":
            torch.relu(both @ a),
        "the LeakyReLU is missing: GAT applies it to a^T [W h_i || W h_j].": both @ a,
        "the LeakyReLU is applied before `a` (that is GATv2's order): GAT takes the dot product first, "
        "then LeakyReLU.": F.leaky_relu(both, 0.2) @ a,
    }


def _check_score_on(fn: Callable[..., Any], Wh_i: Tensor, Wh_j: Tensor, a: Tensor, seconds: float) -> None:
    name = "gat_score"
    actual = call_on_copies(fn, Wh_i, Wh_j, a, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _score(Wh_i, Wh_j, a)
    mistakes = {h: m for h, m in _score_mistakes(Wh_i, Wh_j, a).items()
                if not torch.allclose(m, expected, atol=1e-5, rtol=1e-4)}
    expect_close(actual, expected, name=f"{name} (Wh_i {tuple(Wh_i.shape)}, a {tuple(a.shape)})",
                 mistakes=mistakes)


def _score_inputs(batch: tuple[int, ...], d: int, gen: torch.Generator,
                  dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    return (torch.randn(*batch, d, generator=gen, dtype=dtype), torch.randn(*batch, d, generator=gen, dtype=dtype),
            torch.randn(2 * d, generator=gen, dtype=dtype))


def check_gat_score_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: six edges, d = 4."""
    _check_score_on(fn, *_score_inputs((6,), 4, torch.Generator().manual_seed(0)), seconds)


def check_gat_score_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: one edge, leading axes, d = 1, float64."""
    gen = torch.Generator().manual_seed(1)
    for batch, d in [((), 3), ((2, 5), 6), ((7,), 1), ((40,), 16)]:
        _check_score_on(fn, *_score_inputs(batch, d, gen), seconds)
    _check_score_on(fn, *_score_inputs((3, 4), 5, gen, dtype=torch.float64), seconds)


# ---------------------------------------------------------------------------
# Exercise 2: the softmax over each node's incoming edges
# ---------------------------------------------------------------------------


def _grouped_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Softmax over the entries of scores that share a value of index."""
    top = torch.full((num_nodes,), -torch.inf, dtype=scores.dtype).scatter_reduce(
        0, index, scores, "amax")
    e = torch.exp(scores - top[index])
    return e / torch.zeros(num_nodes, dtype=scores.dtype).index_add(0, index, e)[index]


def _softmax_mistakes(scores: Tensor, edge_index: Tensor, num_nodes: int) -> dict[str, Tensor]:
    src, dst = edge_index
    return {
        "the weights are normalised over each node's outgoing edges (grouped by edge_index[0]): node i "
        "attends over the sources j of its incoming edges, so group by the target, edge_index[1].":
            _grouped_softmax(scores, src, num_nodes),
        "the softmax runs over all edges at once: each node's weights (the edges with the same target "
        "edge_index[1]) must sum to 1 on their own.": torch.softmax(scores, dim=0),
        "the scores are divided by their sum without exp: take exp(score) (minus each node's largest "
        "score, for safety), then divide by the node's sum.":
            scores / torch.zeros(num_nodes, dtype=scores.dtype).index_add(0, dst, scores)[dst],
        "the weights are uniform over the neighbours: the scores must decide them, exp(e_ij) / sum_k "
        "exp(e_ik).": _grouped_softmax(torch.zeros_like(scores), dst, num_nodes),
        "each node's weights are normalised by the largest exp instead of the sum: divide by the sum over "
        "the node's incoming edges.": torch.exp(scores - torch.full((num_nodes,), -torch.inf).to(
            scores.dtype).scatter_reduce(0, dst, scores, "amax")[dst]),
    }


def _check_softmax_on(fn: Callable[..., Any], scores: Tensor, edge_index: Tensor, num_nodes: int,
                      seconds: float) -> None:
    name = "neighbour_softmax"
    actual = call_on_copies(fn, scores, edge_index, num_nodes, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _grouped_softmax(scores, edge_index[1], num_nodes)
    if isinstance(actual, Tensor) and actual.shape == expected.shape and not torch.isfinite(
            actual.detach().double()).all() and scores.abs().max() > 80:
        raise AssertionError(f"`{name}` returned inf or NaN for large scores: subtract each node's largest "
                             "score before exp (or use masked_softmax, which does).")
    if isinstance(actual, Tensor) and actual.dim() == 2 and actual.shape == (num_nodes, num_nodes):
        raise AssertionError(f"`{name}` returned a (nodes, nodes) matrix: return one weight per edge, in the "
                             "order of edge_index, e.g. weights[edge_index[1], edge_index[0]].")
    mistakes = {h: m for h, m in _softmax_mistakes(scores, edge_index, num_nodes).items()
                if not torch.allclose(m, expected, atol=1e-5, rtol=1e-4)}
    expect_close(actual, expected, name=f"{name} ({edge_index.shape[1]} edges, {num_nodes} nodes)",
                 mistakes=mistakes)


def _random_graph(num_nodes: int, num_edges: int, gen: torch.Generator) -> Tensor:
    """Distinct random edges (no pair twice), in a random order.  Shapes: -> (2, edges)."""
    pairs = torch.randperm(num_nodes * num_nodes, generator=gen)[:num_edges]
    return torch.stack([pairs // num_nodes, pairs % num_nodes])


def check_neighbour_softmax_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a graph of 5 nodes and 9 edges."""
    edge_index = torch.tensor([[1, 2, 0, 3, 4, 0, 1, 4, 2], [0, 0, 1, 1, 1, 2, 3, 3, 4]])
    scores = torch.randn(9, generator=torch.Generator().manual_seed(0))
    _check_softmax_on(fn, scores, edge_index, 5, seconds)


def check_neighbour_softmax_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: edges in random order, self-loops, a node with no incoming edge, large scores, float64."""
    gen = torch.Generator().manual_seed(1)
    for num_nodes, num_edges in [(7, 20), (12, 60), (3, 9), (1, 1)]:
        edge_index = _random_graph(num_nodes, num_edges, gen)
        _check_softmax_on(fn, torch.randn(num_edges, generator=gen), edge_index, num_nodes, seconds)
    # Node 3 has no incoming edge; node 0 only its self-loop.
    edge_index = torch.tensor([[0, 2, 3, 3, 1, 0], [0, 1, 1, 2, 2, 2]])
    _check_softmax_on(fn, torch.randn(6, generator=gen, dtype=torch.float64), edge_index, 4, seconds)
    edge_index = _random_graph(6, 18, gen)
    _check_softmax_on(fn, 300.0 + 50.0 * torch.randn(18, generator=gen), edge_index, 6, seconds)
