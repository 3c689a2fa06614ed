"""GATLayer and GATv2 against PyTorch Geometric, the edge-index helpers, equivariance on graphs, and chapter
14's experiments."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import companion  # noqa: E402
from companion.graph_attention import (GAT, GATLayer, add_self_loops, complete_edge_index,  # noqa: E402
                                       edge_weights, neighbour_mask, permute_nodes)


def random_graph(num_nodes: int, num_edges: int, seed: int, loops: bool = True) -> torch.Tensor:
    """Distinct random directed edges in a random order.  Shapes: -> (2, edges)."""
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(num_nodes * num_nodes, generator=gen)
    edges = torch.stack([pairs // num_nodes, pairs % num_nodes])
    if not loops:
        edges = edges[:, edges[0] != edges[1]]
    return edges[:, :num_edges]


# --- PyTorch Geometric: the same numbers given the same weights ------------------------------------------------


def pyg_twin(ours: GATLayer):
    """PyTorch Geometric's layer with our layer's weights (its linear biases, which GAT has not, set to 0)."""
    pyg = pytest.importorskip("torch_geometric.nn")
    h, d = ours.num_heads, ours.out_features
    kw = dict(heads=h, concat=ours.concat, add_self_loops=ours.add_self_loops,
              negative_slope=ours.negative_slope)
    in_features = ours.W.in_features
    with torch.no_grad():
        if ours.v2:
            ref = pyg.GATv2Conv(in_features, d, **kw).double()
            ref.lin_l.weight.copy_(ours.W.weight)
            ref.lin_r.weight.copy_(ours.W_dst.weight)
            ref.lin_l.bias.zero_()
            ref.lin_r.bias.zero_()
            ref.att.copy_(ours.a[None])
        else:
            ref = pyg.GATConv(in_features, d, **kw).double()
            ref.lin.weight.copy_(ours.W.weight)
            ref.att_src.copy_(ours.a_src[None])
            ref.att_dst.copy_(ours.a_dst[None])
        ref.bias.copy_(ours.bias)
    return ref


@pytest.mark.parametrize("v2", [False, True], ids=["GAT", "GATv2"])
@pytest.mark.parametrize("concat", [True, False], ids=["concat", "mean"])
@pytest.mark.parametrize("self_loops", [True, False], ids=["loops", "no-loops"])
def test_gat_layer_equals_pytorch_geometric(v2: bool, concat: bool, self_loops: bool) -> None:
    torch.manual_seed(0)
    n = 9
    edge_index = random_graph(n, 30, seed=1)  # random order, some self-loops already there
    ours = GATLayer(5, 3, 4, concat=concat, v2=v2, add_self_loops=self_loops).double()
    with torch.no_grad():
        ours.bias.normal_()
    ref = pyg_twin(ours)
    X = torch.randn(n, 5, dtype=torch.float64)
    out_ref, (edges_ref, alpha_ref) = ref(X, edge_index, return_attention_weights=True)
    out = ours(X, edge_index)
    assert out.shape == out_ref.shape == (n, 12 if concat else 3)
    torch.testing.assert_close(out, out_ref, atol=1e-6, rtol=0)
    # PyTorch Geometric returns the edges it used (its self-loops appended) and one weight per edge and head.
    expected_edges = add_self_loops(edge_index, n) if self_loops else edge_index
    assert torch.equal(edges_ref, expected_edges)
    torch.testing.assert_close(edge_weights(ours.attention_weights, edges_ref), alpha_ref, atol=1e-6, rtol=0)
    # The gradient agrees too.
    upstream = torch.randn_like(out)
    g_ours = torch.autograd.grad((out * upstream).sum(), ours.W.weight)[0]
    g_ref = torch.autograd.grad((out_ref * upstream).sum(), (ref.lin_l if v2 else ref.lin).weight)[0]
    torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=0)


def test_float32_layer_equals_pytorch_geometric_on_the_karate_club() -> None:
    torch.manual_seed(2)
    club = companion.karate_club()
    for v2 in (False, True):
        ours = GATLayer(34, 8, 2, v2=v2)
        ref = pyg_twin(ours).float()
        torch.testing.assert_close(ours(club.X, club.edge_index), ref(club.X, club.edge_index),
                                   atol=1e-6, rtol=1e-5)


# --- the edge-index helpers -----------------------------------------------------------------------------------


def test_add_self_loops_drops_old_loops_and_appends_one_per_node_in_order() -> None:
    edges = torch.tensor([[0, 2, 1, 2], [1, 2, 0, 0]])
    assert add_self_loops(edges, 3).tolist() == [[0, 1, 2, 0, 1, 2], [1, 0, 0, 0, 1, 2]]


def test_neighbour_mask_puts_targets_on_rows_and_refuses_a_repeated_edge() -> None:
    mask = neighbour_mask(torch.tensor([[0, 1], [2, 2]]), 3)  # 0 -> 2, 1 -> 2
    assert mask.tolist() == [[False] * 3, [False] * 3, [True, True, False]]
    with pytest.raises(ValueError, match="twice"):
        neighbour_mask(torch.tensor([[0, 0], [1, 1]]), 2)


@pytest.mark.parametrize("edge_index, match", [
    (torch.tensor([0, 1]), "shape"),
    (torch.tensor([[0, 1], [1, 0]], dtype=torch.int32), "int64"),
    (torch.tensor([[0, 5], [1, 0]]), r"\[0, 2\]"),
    ([[0, 1], [1, 0]], "torch.Tensor"),
])
def test_bad_edge_index_is_refused(edge_index, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GATLayer(4, 2, 1)(torch.randn(3, 4), edge_index)


def test_layer_refuses_features_of_the_wrong_width_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"\(nodes, 4\)"):
        GATLayer(4, 2, 1)(torch.randn(3, 5), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="num_heads"):
        GATLayer(4, 2, 0)
    with pytest.raises(ValueError, match="dropout"):
        GATLayer(4, 2, 1, dropout=1.0)


def test_complete_edge_index_lists_every_ordered_pair_once() -> None:
    edges = complete_edge_index(4)
    assert edges.shape == (2, 16)
    assert neighbour_mask(edges, 4).all()


# --- the weights -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v2", [False, True])
def test_weights_sum_to_one_over_neighbours_and_vanish_elsewhere(v2: bool) -> None:
    torch.manual_seed(0)
    edges = random_graph(8, 20, seed=3)
    layer = GATLayer(3, 2, 3, v2=v2)
    layer(torch.randn(8, 3), edges)
    w = layer.attention_weights
    mask = neighbour_mask(add_self_loops(edges, 8), 8)
    assert w.shape == (3, 8, 8)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 8))
    assert (w[:, ~mask] == 0).all()


def test_a_node_without_neighbours_gets_the_bias_and_no_nan() -> None:
    torch.manual_seed(0)
    layer = GATLayer(3, 2, 2, add_self_loops=False)
    with torch.no_grad():
        layer.bias.fill_(0.5)
    X = torch.randn(3, 3, requires_grad=True)
    out = layer(X, torch.tensor([[0], [1]]))  # only 0 -> 1: nodes 0 and 2 see nobody
    assert torch.equal(out[0].detach(), torch.full((4,), 0.5)) and torch.equal(out[2].detach(), out[0].detach())
    out.sum().backward()
    assert torch.isfinite(X.grad).all()


def test_gat_ranks_the_neighbours_alike_for_every_query() -> None:
    # Static attention: on a complete bipartite graph every query's weights over the sources come in one order.
    torch.manual_seed(0)
    sources, targets = torch.arange(6, 12), torch.arange(6)
    edges = torch.cartesian_prod(sources, targets).T
    X = torch.randn(12, 5)
    for seed in range(5):
        torch.manual_seed(seed)
        layer = GATLayer(5, 4, 1, add_self_loops=False)
        layer(X, edges)
        order = layer.attention_weights[0][:6, 6:].argsort(-1)  # (targets, sources)
        assert (order == order[:1]).all()


def test_gatv2_can_rank_the_neighbours_differently() -> None:
    torch.manual_seed(0)
    sources, targets = torch.arange(6, 12), torch.arange(6)
    edges = torch.cartesian_prod(sources, targets).T
    layer = GATLayer(5, 8, 1, v2=True, add_self_loops=False)
    layer(torch.randn(12, 5), edges)
    top = layer.attention_weights[0][:6, 6:].argmax(-1)
    assert len(set(top.tolist())) > 1, top


# --- equivariance: self-attention is attention on the complete graph ------------------------------------------


@pytest.mark.parametrize("v2", [False, True])
def test_gat_on_the_complete_graph_is_permutation_equivariant(v2: bool) -> None:
    torch.manual_seed(0)
    layer = GATLayer(6, 4, 2, v2=v2, add_self_loops=False)
    edges = complete_edge_index(10)
    X = torch.randn(1, 10, 6)
    gap = companion.permutation_gap(lambda Z: layer(Z[0], edges)[None], X, torch.randperm(10))
    assert gap < 1e-5


def test_renumbering_nodes_and_edges_renumbers_the_output_but_features_alone_do_not() -> None:
    torch.manual_seed(0)
    edges = random_graph(12, 30, seed=4, loops=False)
    X = torch.randn(12, 5)
    layer = GATLayer(5, 3, 2)
    perm = torch.randperm(12)
    X_p, edges_p = permute_nodes(X, edges, perm)
    with torch.no_grad():
        out = layer(X, edges)
        torch.testing.assert_close(layer(X_p, edges_p), out[perm])
        assert (layer(X_p, edges) - out[perm]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="permutation"):
        permute_nodes(X, edges, torch.zeros(12, dtype=torch.long))


def test_gat_model_gives_logits_per_node_and_trains() -> None:
    torch.manual_seed(0)
    club = companion.karate_club()
    model = GAT(34, 4, 2, num_heads=2)
    assert model(club.X, club.edge_index).shape == (34, 2)
    losses = companion.train_node_classifier(model, club.X, club.edge_index, club.y, club.train_mask,
                                             num_epochs=30, lr=1e-2, device="cpu", progress=False)
    assert losses[-1] < losses[0] / 2


# --- the experiments -------------------------------------------------------------------------------------------


def test_karate_accuracies_beat_the_graph_free_baseline() -> None:
    club = companion.karate_club()
    with_graph = companion.karate_accuracies(club, [0, 1], device="cpu")
    without = companion.karate_accuracies(club, [0, 1], device="cpu", no_edges=True)
    assert min(with_graph) > 0.8 and max(without) < 0.75, (with_graph, without)


def test_dictionary_lookup_separates_static_from_dynamic_attention() -> None:
    data = companion.make_dictionary_lookup(k=4, num_graphs=24)
    gat, _, gat_acc = companion.fit_dictionary_lookup(data, v2=False, num_epochs=150, device="cpu", progress=False)
    gatv2, losses, v2_acc = companion.fit_dictionary_lookup(data, v2=True, num_epochs=150, device="cpu",
                                                            progress=False)
    assert v2_acc == 1.0 and losses[-1] < 0.05 and gat_acc < 0.85
    assert companion.lookup_attention_choices(gat, data)["same for all"] == 1.0
    assert companion.lookup_attention_choices(gatv2, data)["own key"] == 1.0


def test_same_label_weight_of_uniform_weights_is_the_uniform_share() -> None:
    club = companion.karate_club()
    mask = neighbour_mask(club.edge_index, 34).float()
    uniform = (mask / mask.sum(-1, keepdim=True))[None]  # (1, nodes, nodes)
    share, uniform_share = companion.same_label_weight(uniform, club.edge_index, club.y)
    assert share == pytest.approx(uniform_share)
    assert 0.5 < uniform_share < 1.0


def test_draw_graph_attention_draws_every_edge() -> None:
    club = companion.karate_club()
    layer = GATLayer(34, 2, 2)
    layer(club.X, club.edge_index)
    fig, ax = plt.subplots()
    companion.draw_graph_attention(club.edge_index, layer.attention_weights, club.y, ax)
    assert len(ax.patches) == club.edge_index.shape[1]  # one arrow per directed edge
    plt.close(fig)


@pytest.mark.gpu
def test_layer_on_the_gpu_equals_the_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    club = companion.karate_club()
    for v2 in (False, True):
        layer = GATLayer(34, 4, 2, v2=v2)
        expected = layer(club.X, club.edge_index)
        actual = layer.to("cuda")(club.X.cuda(), club.edge_index.cuda()).cpu()
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
