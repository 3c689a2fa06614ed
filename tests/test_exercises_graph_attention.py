"""The exercise checks of chapter 14 accept correct answers and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import companion
from companion.exercises import graph_attention as ex

SCORE_CHECKS = [ex.check_gat_score_small, ex.check_gat_score_thorough]
SOFTMAX_CHECKS = [ex.check_neighbour_softmax_small, ex.check_neighbour_softmax_thorough]


# --- gat_score ---------------------------------------------------------------------------------------------------


def score_ok(Wh_i, Wh_j, a):
    return F.leaky_relu(torch.cat([Wh_i, Wh_j], dim=-1) @ a, negative_slope=0.2)


def score_split(Wh_i, Wh_j, a):
    d = Wh_i.shape[-1]
    s = (Wh_i * a[:d]).sum(-1) + (Wh_j * a[d:]).sum(-1)
    return torch.where(s > 0, s, 0.2 * s)


def score_swapped(Wh_i, Wh_j, a):
    return score_ok(Wh_j, Wh_i, a)


def score_default_slope(Wh_i, Wh_j, a):
    return F.leaky_relu(torch.cat([Wh_i, Wh_j], dim=-1) @ a)


def score_relu(Wh_i, Wh_j, a):
    return torch.relu(torch.cat([Wh_i, Wh_j], dim=-1) @ a)


def score_linear(Wh_i, Wh_j, a):
    return torch.cat([Wh_i, Wh_j], dim=-1) @ a


def score_v2_order(Wh_i, Wh_j, a):
    return F.leaky_relu(torch.cat([Wh_i, Wh_j], dim=-1), 0.2) @ a


@pytest.mark.parametrize("answer", [score_ok, score_split])
@pytest.mark.parametrize("check", SCORE_CHECKS)
def test_score_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (score_swapped, "swapped"),
    (score_default_slope, "default slope 0.01"),
    (score_relu, "ReLU cuts"),
    (score_linear, "LeakyReLU is missing"),
    (score_v2_order, "GATv2's order"),
])
@pytest.mark.parametrize("check", SCORE_CHECKS)
def test_score_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


# --- neighbour_softmax --------------------------------------------------------------------------------------------


def softmax_dense(scores, edge_index, num_nodes):
    src, dst = edge_index
    mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    mask[dst, src] = True
    dense = torch.zeros(num_nodes, num_nodes, dtype=scores.dtype).index_put((dst, src), scores)
    return companion.masked_softmax(dense[None], mask[None])[0][dst, src]


def softmax_scatter(scores, edge_index, num_nodes):
    dst = edge_index[1]
    top = torch.full((num_nodes,), -torch.inf, dtype=scores.dtype).scatter_reduce(0, dst, scores, "amax")
    e = torch.exp(scores - top[dst])
    return e / torch.zeros(num_nodes, dtype=scores.dtype).index_add(0, dst, e)[dst]


def softmax_loop(scores, edge_index, num_nodes):
    out = torch.empty_like(scores)
    for i in range(num_nodes):
        incoming = edge_index[1] == i
        if incoming.any():
            out[incoming] = torch.softmax(scores[incoming], dim=0)
    return out


def softmax_by_source(scores, edge_index, num_nodes):
    return softmax_scatter(scores, edge_index.flip(0), num_nodes)


def softmax_global(scores, edge_index, num_nodes):
    return torch.softmax(scores, dim=0)


def softmax_no_exp(scores, edge_index, num_nodes):
    dst = edge_index[1]
    return scores / torch.zeros(num_nodes, dtype=scores.dtype).index_add(0, dst, scores)[dst]


def softmax_uniform(scores, edge_index, num_nodes):
    return softmax_scatter(torch.zeros_like(scores), edge_index, num_nodes)


def softmax_by_max(scores, edge_index, num_nodes):
    dst = edge_index[1]
    top = torch.full((num_nodes,), -torch.inf, dtype=scores.dtype).scatter_reduce(0, dst, scores, "amax")
    return torch.exp(scores - top[dst])


def softmax_unsafe(scores, edge_index, num_nodes):
    dst = edge_index[1]
    e = torch.exp(scores)
    return e / torch.zeros(num_nodes, dtype=scores.dtype).index_add(0, dst, e)[dst]


def softmax_dense_out(scores, edge_index, num_nodes):
    src, dst = edge_index
    mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    mask[dst, src] = True
    dense = torch.zeros(num_nodes, num_nodes, dtype=scores.dtype).index_put((dst, src), scores)
    return companion.masked_softmax(dense[None], mask[None])[0]


@pytest.mark.parametrize("answer", [softmax_dense, softmax_scatter, softmax_loop])
@pytest.mark.parametrize("check", SOFTMAX_CHECKS)
def test_softmax_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (softmax_by_source, "outgoing edges"),
    (softmax_global, "all edges at once"),
    (softmax_no_exp, "without exp"),
    (softmax_uniform, "uniform"),
    (softmax_by_max, "largest exp"),
    (softmax_dense_out, r"\(nodes, nodes\) matrix"),
])
@pytest.mark.parametrize("check", SOFTMAX_CHECKS)
def test_softmax_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_softmax_thorough_catches_overflow() -> None:
    ex.check_neighbour_softmax_small(softmax_unsafe)  # small scores: right
    with pytest.raises(AssertionError, match="largest score before exp"):
        ex.check_neighbour_softmax_thorough(softmax_unsafe)


def test_every_question_has_a_forbidden_entry() -> None:
    assert set(ex.FORBIDDEN) == {"gat_score", "neighbour_softmax"}
