"""Graph attention (chapter 14): GAT (Velickovic et al. 2018) and GATv2 (Brody et al.
2022), written from their equations.

A graph is given as PyTorch Geometric gives it: node features (nodes, in_features)
and an edge index (2, edges) whose column (j, i) is an edge from the source j to the
target i; a message flows from j to i, so node i attends over the sources of its
incoming edges. The scores are computed per edge, placed in a (nodes, nodes) matrix
and normalised over each node's neighbours by chapter 4's masked_softmax: a row is a
query (a target node), a column a key (a source node). Self-attention is the case of
the complete graph.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import masked_softmax
from .utils import check_dropout, check_positive_int

__all__ = [
    "add_self_loops",
    "complete_edge_index",
    "neighbour_mask",
    "edge_weights",
    "permute_nodes",
    "GATLayer",
    "GAT",
]


def _check_edge_index(edge_index: object, num_nodes: int) -> None:
    if not isinstance(edge_index, Tensor):
        raise ValueError(
            f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError("edge_index must have shape (2, edges), got "
                         f"{tuple(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise ValueError(f"edge_index must hold int64 node ids, got {edge_index.dtype}")
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(f"edge_index must hold node ids in [0, {num_nodes - 1}], got "
                         f"ids from {int(edge_index.min())} to {int(edge_index.max())}")


def add_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Drop the self-loops of edge_index, then append one (i, i) per node (ch. 14).

    Shapes: edge_index (2, edges) -> (2, edges' + nodes). The order is PyTorch
    Geometric's (remove_self_loops, then add_self_loops): the other edges as they
    came, then the loops of nodes 0, 1, ..., num_nodes - 1.
    """
    check_positive_int("num_nodes", num_nodes)
    _check_edge_index(edge_index, num_nodes)
    kept = edge_index[:, edge_index[0] != edge_index[1]]
    loops = torch.arange(num_nodes, device=edge_index.device).expand(2, -1)
    return torch.cat([kept, loops], dim=1)


def complete_edge_index(num_nodes: int) -> Tensor:
    """Every ordered pair (j, i), self-pairs included: self-attention's graph (ch. 14).

    Shapes: -> (2, edges) with edges = nodes * nodes.
    """
    check_positive_int("num_nodes", num_nodes)
    ids = torch.arange(num_nodes)
    return torch.cartesian_prod(ids, ids).T.contiguous()  # (2, nodes * nodes)


def neighbour_mask(edge_index: Tensor, num_nodes: int) -> Tensor:
    """The mask[i, j] = True when an edge goes from j to i: who i attends to (ch. 14).

    Shapes: edge_index (2, edges) -> (nodes, nodes) bool, rows the targets i (the
    queries), columns the sources j (the keys). A repeated edge is refused: the
    dense matrix has room for one score per pair.
    """
    _check_edge_index(edge_index, num_nodes)
    src, dst = edge_index
    mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool, device=edge_index.device)
    mask[dst, src] = True
    if int(mask.sum()) != edge_index.shape[1]:
        raise ValueError("edge_index holds an edge twice: give each (source, target) "
                         "pair once")
    return mask


def edge_weights(weights: Tensor, edge_index: Tensor) -> Tensor:
    """Read one weight per edge out of dense attention weights, in edge order (ch. 14).

    Shapes: weights (h, nodes, nodes) with rows the targets, edge_index (2, edges)
    -> (edges, h), the layout of PyTorch Geometric's returned attention weights.
    """
    _check_edge_index(edge_index, weights.shape[-1])
    src, dst = edge_index
    return weights[:, dst, src].T  # (h, edges) -> (edges, h)


def permute_nodes(X: Tensor, edge_index: Tensor, perm: Tensor) -> tuple[Tensor, Tensor]:
    """The same graph, nodes renumbered: new node p is old node perm[p] (ch. 14).

    Shapes: X (nodes, in_features), edge_index (2, edges), perm (nodes,) a
    permutation -> (X[perm], edge_index relabelled), the edges in the same order.
    """
    _check_permutation_of_nodes(X, edge_index, perm)
    position = torch.empty_like(perm)
    position[perm] = torch.arange(len(perm), device=perm.device)  # old id -> new id
    return X[perm], position[edge_index]


def _check_permutation_of_nodes(X: Tensor, edge_index: Tensor, perm: object) -> None:
    _check_edge_index(edge_index, X.shape[0])
    n = X.shape[0]
    if not isinstance(perm, Tensor) or perm.dim() != 1 or not torch.equal(
            torch.sort(perm.cpu()).values, torch.arange(n)):
        raise ValueError(f"perm must be a permutation of 0..{n - 1} (1-D int64), "
                         f"got {perm!r:.80}")


class GATLayer(nn.Module):
    """A graph attention layer: attention over each node's neighbours (ch. 14, eq. gat).

    GAT scores the edge j -> i by LeakyReLU(a^T [W h_i || W h_j]); with v2=True it
    is GATv2's a^T LeakyReLU(W_dst h_i + W h_j), the nonlinearity before `a`.
    Shapes: forward(X (nodes, in_features), edge_index (2, edges)) -> (nodes,
    h * out_features) with concat=True, else (nodes, out_features), the heads
    averaged. The weights of the last call, (h, nodes, nodes) with rows the targets,
    are kept in self.attention_weights.
    """

    def __init__(self, in_features: int, out_features: int, num_heads: int,
                 concat: bool = True, v2: bool = False, *, negative_slope: float = 0.2,
                 dropout: float = 0.0, add_self_loops: bool = True) -> None:
        super().__init__()
        _check_layer_args(in_features, out_features, num_heads, dropout)
        h, d = num_heads, out_features
        self.num_heads, self.out_features, self.concat, self.v2 = h, d, concat, v2
        self.negative_slope, self.add_self_loops = negative_slope, add_self_loops
        # The messages W h_j; GATv2 has a second map W_dst for the target's side.
        self.W = nn.Linear(in_features, h * d, bias=False)
        self.W_dst = nn.Linear(in_features, h * d, bias=False) if v2 else None
        # a = [a_dst || a_src] (per head): a^T [W h_i || W h_j] splits into two dots.
        self.a_dst = nn.Parameter(torch.empty(h, d)) if not v2 else None
        self.a_src = nn.Parameter(torch.empty(h, d)) if not v2 else None
        self.a = nn.Parameter(torch.empty(h, d)) if v2 else None
        self.bias = nn.Parameter(torch.zeros(h * d if concat else d))
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Optional[Tensor] = None
        for p in (self.a_dst, self.a_src, self.a):
            if p is not None:
                nn.init.xavier_uniform_(p)

    def edge_scores(self, X: Tensor, edge_index: Tensor) -> Tensor:
        """The score e_ij of every edge j -> i, per head (eq. gat or eq. gatv2).

        Shapes: X (nodes, in_features), edge_index (2, edges) -> (edges, h).
        """
        src, dst = edge_index  # (edges,), (edges,)
        h, d = self.num_heads, self.out_features
        Wh = self.W(X).view(-1, h, d)  # (nodes, h, d)
        if not self.v2:
            # a_dst . W h_i + a_src . W h_j, each dot computed once per node
            s_dst, s_src = (Wh * self.a_dst).sum(-1), (Wh * self.a_src).sum(-1)
            return F.leaky_relu(s_dst[dst] + s_src[src], self.negative_slope)
        Wh_dst = self.W_dst(X).view(-1, h, d)  # (nodes, h, d)
        # the pair meets inside the nonlinearity: (edges, h, d)
        hidden = F.leaky_relu(Wh_dst[dst] + Wh[src], self.negative_slope)
        return (hidden * self.a).sum(-1)  # (edges, h)

    def forward(self, X: Tensor, edge_index: Tensor) -> Tensor:
        """Scores per edge, softmax over each node's neighbours, average of W h_j.

        Shapes: X (nodes, in_features), edge_index (2, edges) -> (nodes, h * d) or
        (nodes, d) with d = out_features.
        """
        n, h, d = _check_graph(self, X, edge_index)
        if self.add_self_loops:
            edge_index = add_self_loops(edge_index, n)
        src, dst = edge_index
        scores = self.edge_scores(X, edge_index)  # (edges, h)
        # The scores into a (query, key) = (target, source) matrix, one per head.
        dense = scores.new_zeros(n, n, h).index_put((dst, src), scores)  # (n, n, h)
        mask = neighbour_mask(edge_index, n)  # (n, n)
        self.attention_weights = masked_softmax(dense.permute(2, 0, 1), mask[None])
        Wh = self.W(X).view(n, h, d).transpose(0, 1)  # (h, n, d)
        # (h, n, n) @ (h, n, d) -> (h, n, d): node i averages its neighbours' W h_j
        out = torch.bmm(self.dropout(self.attention_weights), Wh)
        if self.concat:
            return out.transpose(0, 1).reshape(n, h * d) + self.bias
        return out.mean(0) + self.bias


def _check_layer_args(in_features: int, out_features: int, num_heads: int,
                      dropout: float) -> None:
    for name, value in (("in_features", in_features), ("out_features", out_features),
                        ("num_heads", num_heads)):
        check_positive_int(name, value)
    check_dropout(dropout)


def _check_graph(layer: GATLayer, X: object, edge_index: object) -> tuple[int, ...]:
    in_features = layer.W.in_features
    if not isinstance(X, Tensor) or X.dim() != 2 or X.shape[1] != in_features:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must have shape (nodes, {in_features}), got {shape}")
    _check_edge_index(edge_index, X.shape[0])
    return X.shape[0], layer.num_heads, layer.out_features


class GAT(nn.Module):
    """Two graph attention layers for node classification (ch. 14; Velickovic 2018).

    Heads concatenated and ELU in the hidden layer, heads averaged in the output
    layer, dropout on the features and the attention weights as in the paper.
    Shapes: forward(X (nodes, in_features), edge_index (2, edges)) -> logits
    (nodes, C) with C = num_classes.
    """

    def __init__(self, in_features: int, num_hiddens: int, num_classes: int, *,
                 num_heads: int = 4, out_heads: int = 1, v2: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden = GATLayer(in_features, num_hiddens, num_heads, v2=v2,
                               dropout=dropout)
        self.out = GATLayer(num_hiddens * num_heads, num_classes, out_heads,
                            concat=False, v2=v2, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, X: Tensor, edge_index: Tensor) -> Tensor:
        H = F.elu(self.hidden(self.dropout(X), edge_index))  # (nodes, h * num_hiddens)
        return self.out(self.dropout(H), edge_index)  # (nodes, C)
