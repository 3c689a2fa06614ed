"""Chapter 14's experiments: node classification on the karate club over training
seeds, and static against dynamic attention on Brody et al.'s dictionary lookup."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import matplotlib.pyplot as plt
import networkx as nx
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import Tensor, nn

from ..graph_attention import GAT, GATLayer, edge_weights
from ..tasks.dictionary_lookup import DictionaryLookup
from ..tasks.karate import KarateClub
from ..training import train
from ..utils import one_thread_on_cpu, set_seed, try_gpu

__all__ = [
    "train_node_classifier", "node_accuracy", "karate_accuracies",
    "DictionaryLookupNet", "fit_dictionary_lookup", "lookup_attention_choices",
    "draw_graph_attention", "same_label_weight",
]

Device = Optional[torch.device | str]


def _node_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits, targets, ignore_index=-100)  # -100: not labelled


def train_node_classifier(model: nn.Module, X: Tensor, edge_index: Tensor, y: Tensor,
                          train_mask: Tensor, *, num_epochs: int, lr: float,
                          device: Device = None,
                          progress: Optional[bool] = None) -> list[float]:
    """Full-batch Adam on the labelled nodes only (ch. 14; companion.train).

    Shapes: X (nodes, in_features), edge_index (2, edges), y (nodes,), train_mask
    (nodes,) bool -> num_epochs floats.
    """
    device = torch.device(device) if device is not None else try_gpu()
    targets = y.masked_fill(~train_mask, -100)  # the loss sees the labelled nodes only
    model.train()
    with one_thread_on_cpu(device):  # a tiny graph: one CPU thread is faster
        return train(model, _node_loss, (X, edge_index), targets, num_epochs=num_epochs,
                     lr=lr, optimizer="adam", progress=progress, device=device)


def node_accuracy(model: nn.Module, X: Tensor, edge_index: Tensor, y: Tensor,
                  mask: Tensor) -> float:
    """The fraction of the nodes in mask whose class the model gets right (ch. 14).

    Shapes: X (nodes, in_features), edge_index (2, edges), y, mask (nodes,) -> float.
    """
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        predicted = model(X.to(device), edge_index.to(device)).argmax(-1).cpu()
    return (predicted[mask] == y[mask]).float().mean().item()


def karate_accuracies(data: KarateClub, seeds: Sequence[int], *, v2: bool = False,
                      num_hiddens: int = 8, num_heads: int = 4, dropout: float = 0.5,
                      num_epochs: int = 100, lr: float = 1e-2, device: Device = None,
                      no_edges: bool = False) -> list[float]:
    """Test accuracy of a two-layer GAT on the karate club, one per training seed.

    Shapes: -> len(seeds) floats. With no_edges=True the graph is taken away (each
    node sees itself only): the baseline of what the features alone tell.
    """
    edge_index = data.edge_index[:, :0] if no_edges else data.edge_index
    accuracies = []
    for seed in seeds:
        set_seed(seed)
        model = GAT(data.X.shape[1], num_hiddens, int(data.y.max()) + 1,
                    num_heads=num_heads, v2=v2, dropout=dropout)
        train_node_classifier(model, data.X, edge_index, data.y, data.train_mask,
                              num_epochs=num_epochs, lr=lr, device=device,
                              progress=False)
        accuracies.append(node_accuracy(model, data.X, edge_index, data.y,
                                        data.test_mask))
    return accuracies


class DictionaryLookupNet(nn.Module):
    """One graph attention layer, then a linear read-out per node (ch. 14).

    Shapes: forward(X (nodes, features), edge_index (2, edges)) -> logits (nodes, C),
    with features = 2 k + 1 and C = k classes (the values).
    No self-loops: a query attends over the k key nodes of its dictionary only.
    """

    def __init__(self, k: int, num_hiddens: int = 16, *, num_heads: int = 1,
                 v2: bool = False) -> None:
        super().__init__()
        self.gat = GATLayer(2 * k + 1, num_hiddens, num_heads, concat=False, v2=v2,
                            add_self_loops=False)
        self.out = nn.Linear(num_hiddens, k)

    def forward(self, X: Tensor, edge_index: Tensor) -> Tensor:
        return self.out(F.elu(self.gat(X, edge_index)))


def fit_dictionary_lookup(data: DictionaryLookup, *, v2: bool, num_hiddens: int = 16,
                          num_epochs: int = 300, lr: float = 3e-2, seed: int = 0,
                          device: Device = None, progress: Optional[bool] = None
                          ) -> tuple[DictionaryLookupNet, list[float], float]:
    """Train on every query of the data set; return the model, losses, train accuracy.

    Shapes: data.X (nodes, features) -> the model, num_epochs losses, the accuracy.
    """
    set_seed(seed)
    model = DictionaryLookupNet(data.k, num_hiddens, v2=v2)
    losses = train_node_classifier(model, data.X, data.edge_index, data.y, data.query,
                                   num_epochs=num_epochs, lr=lr, device=device,
                                   progress=progress)
    accuracy = node_accuracy(model, data.X, data.edge_index, data.y, data.query)
    return model, losses, accuracy


def lookup_attention_choices(model: DictionaryLookupNet,
                             data: DictionaryLookup) -> dict[str, float]:
    """Where each query puts its largest weight, summed over heads (ch. 14).

    Shapes: -> {"own key": fraction of queries whose top key node holds their own
    key, "same for all": fraction of dictionaries whose k queries share one top key}.
    """
    node_accuracy(model, data.X, data.edge_index, data.y, data.query)  # a forward pass
    weights = model.gat.attention_weights.sum(0).cpu()  # (nodes, nodes)
    # graph g's queries are nodes 2kg .. 2kg + k - 1, its key nodes the next k
    queries = data.query.nonzero().flatten()  # (N * entries,)
    top = weights[queries].argmax(-1)  # the key node each query attends to most
    own = queries + data.k  # query q's key sits k nodes after it
    per_graph = top.view(-1, data.k)  # (N, entries)
    shared = (per_graph == per_graph[:, :1]).all(1)  # (N,)
    return {"own key": (top == own).float().mean().item(),
            "same for all": shared.float().mean().item()}


def draw_graph_attention(edge_index: Tensor, weights: Tensor, labels: Tensor,
                         ax: Optional[Axes] = None, *, seed: int = 0) -> Axes:
    """Draw each edge j -> i coloured by its weight a_ij times i's in-degree (ch. 14).

    Shapes: edge_index (2, edges) without self-loops, weights (h, nodes, nodes) (the
    heads are averaged), labels (nodes,). 1 means the uniform weight 1 / degree;
    self-loops are not drawn. Returns the axes.
    """
    ax = ax if ax is not None else plt.gca()
    src, dst = edge_index.cpu()
    mean_weights = weights.detach().cpu().mean(0, keepdim=True)  # heads averaged
    per_edge = edge_weights(mean_weights, edge_index.cpu())
    degree = torch.bincount(dst, minlength=len(labels)).float()
    relative = (per_edge[:, 0] * degree[dst]).tolist()  # (edges,)
    graph = nx.DiGraph(list(zip(src.tolist(), dst.tolist())))
    pos = nx.spring_layout(nx.Graph(graph), seed=seed)
    nodes = sorted(graph.nodes)
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax, node_size=120,
                           node_color=[f"C{int(labels[v])}" for v in nodes])
    drawn = nx.draw_networkx_edges(
        graph, pos, edgelist=list(zip(src.tolist(), dst.tolist())), ax=ax,
        edge_color=relative, edge_cmap=plt.cm.viridis, width=1.2, arrowsize=6,
        connectionstyle="arc3,rad=0.15", edge_vmin=0.0, edge_vmax=max(relative))
    del drawn  # a list of arrows, which a colour bar cannot read: give it the scale
    scale = plt.cm.ScalarMappable(plt.Normalize(0.0, max(relative)), plt.cm.viridis)
    plt.colorbar(scale, ax=ax, label="weight x in-degree (1 = uniform)")
    ax.set_axis_off()
    return ax


def same_label_weight(weights: Tensor, edge_index: Tensor,
                      labels: Tensor) -> tuple[float, float]:
    """Share of attention on same-label neighbours: the model's, and uniform's (ch. 14).

    Shapes: weights (h, nodes, nodes) (heads averaged), edge_index (2, edges) without
    self-loops, labels (nodes,) -> (attended share, uniform share), each the mean
    over the nodes.
    """
    src, dst = edge_index.cpu()
    mean_weights = weights.detach().cpu().mean(0, keepdim=True)  # heads averaged
    per_edge = edge_weights(mean_weights, edge_index.cpu())
    same = (labels[src] == labels[dst]).float()  # (edges,)
    n = len(labels)
    degree = torch.bincount(dst, minlength=n).float().clamp(min=1)
    attended = torch.zeros(n).index_add(0, dst, per_edge[:, 0] * same)  # (nodes,)
    # Self-loops hold the rest of each node's weight: divide it out to compare.
    on_others = torch.zeros(n).index_add(0, dst, per_edge[:, 0]).clamp(min=1e-12)
    uniform = torch.zeros(n).index_add(0, dst, same) / degree
    return (attended / on_others).mean().item(), uniform.mean().item()
