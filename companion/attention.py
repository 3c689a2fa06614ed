"""Attention scoring functions (chapter 4): masked softmax, additive and dot-product.

Names and call signatures follow d2l (``masked_softmax(X, valid_lens)``,
``AdditiveAttention``, ``DotProductAttention``), so code written against one reads
against the other. Unlike d2l, a query that may attend to no key at all gets all-zero
weights (so its output is the zero vector), never uniform weights and never NaN.
Chapter 4's experiment on the sqrt(d) scaling is ``experiments.scaling``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .utils import check_dropout, check_positive_int

__all__ = [
    "valid_lens_to_mask",
    "masked_softmax",
    "AdditiveAttention",
    "DotProductAttention",
    "fused_dot_product_attention",
]


def _check_tensor(name: str, t: object, dim: int) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != dim:
        raise ValueError(
            f"{name} must be {dim}-D, got shape {tuple(t.shape)} ({t.dim()}-D)"
        )


def valid_lens_to_mask(valid_lens: Tensor, n_q: int, n_k: int) -> Tensor:
    """Valid lengths -> a bool mask, True = may attend (chapter 4, masked softmax).

    Shapes: valid_lens (B,) or (B, n_q) integers -> mask (B, n_q, n_k).
    Key j is visible to a query whose valid length is L exactly when j < L.
    """
    lens = _lengths_per_query(valid_lens, n_q, n_k)  # (B, n_q)
    positions = torch.arange(n_k, device=lens.device)  # (n_k,)
    return positions[None, None, :] < lens[:, :, None]  # (B, n_q, n_k)


def _lengths_per_query(valid_lens: object, n_q: int, n_k: int) -> Tensor:
    """valid_lens checked, and as one length per query.  Shapes: -> (B, n_q)."""
    if not isinstance(valid_lens, Tensor):
        raise ValueError(
            f"valid_lens must be a torch.Tensor, got {type(valid_lens).__name__}"
        )
    if (valid_lens.dtype == torch.bool or valid_lens.is_floating_point()
            or valid_lens.is_complex()):
        raise ValueError(
            "valid_lens must hold integers (a length per sequence or per query), "
            f"got dtype {valid_lens.dtype}"
        )
    if valid_lens.dim() == 1:
        lens = valid_lens[:, None].expand(-1, n_q)  # (B,) -> (B, n_q)
    elif valid_lens.dim() == 2 and valid_lens.shape[1] == n_q:
        lens = valid_lens
    elif valid_lens.dim() == 2:
        raise ValueError(
            f"per-query valid_lens must have shape (B, n_q) with n_q = {n_q}, "
            f"got {tuple(valid_lens.shape)}"
        )
    else:
        raise ValueError(
            "valid_lens must have shape (B,) or (B, n_q), "
            f"got {tuple(valid_lens.shape)}"
        )
    if lens.numel() and (lens.min() < 0 or lens.max() > n_k):
        raise ValueError(
            f"valid_lens must lie in [0, n_k] = [0, {n_k}], "
            f"got values from {int(lens.min())} to {int(lens.max())}"
        )
    return lens


def _as_mask(X: Tensor, valid_lens: Tensor) -> Tensor:
    """The boolean mask (B, n_q, n_k) meant by valid_lens, checked against X."""
    B, n_q, n_k = X.shape
    if not isinstance(valid_lens, Tensor):
        raise ValueError(
            "valid_lens must be None or a torch.Tensor, "
            f"got {type(valid_lens).__name__}"
        )
    if valid_lens.dtype == torch.bool:
        # 3-D only: a 2-D (B, n_k) padding mask would silently broadcast as
        # (n_q, n_k) whenever B == n_q.
        fits = valid_lens.dim() == 3 and all(
            m in (1, x) for m, x in zip(valid_lens.shape, X.shape)
        )
        if not fits:
            raise ValueError(
                f"a boolean mask must be 3-D and broadcast to the scores' shape "
                f"{tuple(X.shape)} (each size 1 or equal), got mask "
                f"{tuple(valid_lens.shape)}"
            )
        return valid_lens.to(X.device).expand(X.shape)
    if valid_lens.shape[0] != B:
        raise ValueError(
            f"valid_lens must have batch size {B} like the scores {tuple(X.shape)}, "
            f"got valid_lens {tuple(valid_lens.shape)}"
        )
    return valid_lens_to_mask(valid_lens.to(X.device), n_q, n_k)


def masked_softmax(X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
    """Softmax over the last axis without the masked keys (ch. 4, masked-softmax; d2l).

    Shapes: X (B, n_q, n_k); valid_lens None, integer (B,) or (B, n_q), or a 3-D bool
    mask broadcastable to (B, n_q, n_k), e.g. (B, 1, n_k), with True = may attend
    -> weights (B, n_q, n_k). A fully masked row gets all-zero weights (d2l returns
    uniform weights there); forward and backward stay free of NaN.
    """
    _check_tensor("X", X, 3)
    if valid_lens is None:
        return F.softmax(X, dim=-1)
    mask = _as_mask(X, valid_lens)
    # The smallest finite value, not -inf: a fully masked row then gives a finite
    # softmax (uniform), which the final product with the mask zeroes. A row with at
    # least one visible key gives exp(min - max) = 0 exactly.
    filled = X.masked_fill(~mask, torch.finfo(X.dtype).min)
    return F.softmax(filled, dim=-1) * mask


def _check_qkv(queries: Tensor, keys: Tensor, values: Tensor) -> None:
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        _check_tensor(name, t, 3)
    if not queries.shape[0] == keys.shape[0] == values.shape[0]:
        raise ValueError(
            "queries, keys and values must have the same batch size, got "
            f"queries {tuple(queries.shape)}, keys {tuple(keys.shape)}, "
            f"values {tuple(values.shape)}"
        )
    if keys.shape[1] != values.shape[1]:
        raise ValueError(
            "keys and values must hold the same number of items (dim 1), got "
            f"keys {tuple(keys.shape)} and values {tuple(values.shape)}"
        )


def _check_same_width(queries: Tensor, keys: Tensor) -> None:
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(
            "queries and keys must have the same feature size d (last dim), got "
            f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)}"
        )


def _linear(in_size: Optional[int], out_size: int) -> nn.Module:
    # With the input size the weights exist at once (d2l 0.17); without it they are
    # created on the first call (LazyLinear, d2l 1.0).
    if in_size is None:
        return nn.LazyLinear(out_size, bias=False)
    return nn.Linear(in_size, out_size, bias=False)


class AdditiveAttention(nn.Module):
    """Additive attention a(q, k) = w_v^T tanh(W_q q + W_k k) (ch. 4, additive; d2l).

    Shapes: forward(queries (B, n_q, query_size), keys (B, n_k, key_size),
    values (B, n_k, d_v), valid_lens as in masked_softmax) -> (B, n_q, d_v); H =
    num_hiddens hidden units. With key_size and query_size given, the weights exist
    at once; without them they are created on the first call.
    """

    def __init__(
        self,
        num_hiddens: int,
        dropout: float,
        key_size: Optional[int] = None,
        query_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        check_dropout(dropout)
        # No bias: a bias b_q + b_k would only shift the argument of tanh.
        self.W_k = _linear(key_size, num_hiddens)
        self.W_q = _linear(query_size, num_hiddens)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Optional[Tensor] = None

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        valid_lens: Optional[Tensor] = None,
    ) -> Tensor:
        """Weights from the additive score, then their average of the values.

        Shapes: queries (B, n_q, query_size), keys (B, n_k, key_size),
        values (B, n_k, d_v) -> (B, n_q, d_v); weights stored in
        self.attention_weights (B, n_q, n_k).
        """
        _check_additive_inputs(self, queries, keys, values)
        q, k = self.W_q(queries), self.W_k(keys)  # (B, n_q, H), (B, n_k, H)
        # Every query against every key: (B, n_q, 1, H) + (B, 1, n_k, H).
        features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))  # (B, n_q, n_k, H)
        scores = self.w_v(features).squeeze(-1)  # (B, n_q, n_k)
        self.attention_weights = masked_softmax(scores, valid_lens)
        # (B, n_q, n_k) @ (B, n_k, d_v) -> (B, n_q, d_v)
        return torch.bmm(self.dropout(self.attention_weights), values)


def _check_additive_inputs(
    attention: AdditiveAttention, queries: Tensor, keys: Tensor, values: Tensor
) -> None:
    _check_qkv(queries, keys, values)
    for name, t, layer in (("queries", queries, attention.W_q),
                           ("keys", keys, attention.W_k)):
        if not isinstance(layer, nn.LazyLinear) and t.shape[-1] != layer.in_features:
            raise ValueError(
                f"{name} must have {layer.in_features} features (last dim), "
                f"got {name} {tuple(t.shape)}"
            )


class DotProductAttention(nn.Module):
    """Scaled dot-product softmax(Q K^T / sqrt(d)) V (ch. 4, eq. scaled-dot; d2l).

    Shapes: forward(queries (B, n_q, d), keys (B, n_k, d), values (B, n_k, d_v),
    valid_lens as in masked_softmax) -> (B, n_q, d_v). The readable path;
    fused_dot_product_attention gives the same numbers faster.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        check_dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Optional[Tensor] = None

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        valid_lens: Optional[Tensor] = None,
    ) -> Tensor:
        """A score per (query, key) pair, softmax over the keys, average of the values.

        Shapes: queries (B, n_q, d), keys (B, n_k, d), values (B, n_k, d_v)
        -> (B, n_q, d_v); weights stored in self.attention_weights (B, n_q, n_k).
        """
        _check_qkv(queries, keys, values)
        _check_same_width(queries, keys)
        d = queries.shape[-1]
        # (B, n_q, d) @ (B, d, n_k) -> (B, n_q, n_k); dividing by sqrt(d) keeps the
        # scores' variance near 1 whatever d is.
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
        self.attention_weights = masked_softmax(scores, valid_lens)
        # (B, n_q, n_k) @ (B, n_k, d_v) -> (B, n_q, d_v)
        return torch.bmm(self.dropout(self.attention_weights), values)


def fused_dot_product_attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    valid_lens: Optional[Tensor] = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """DotProductAttention through PyTorch's fused kernel (chapter 4, fast path).

    Shapes: queries (B, n_q, d), keys (B, n_k, d), values (B, n_k, d_v), valid_lens
    as in masked_softmax -> (B, n_q, d_v). Does not return the weights; a fully
    masked query gives the zero vector, as in DotProductAttention.
    """
    _check_qkv(queries, keys, values)
    _check_same_width(queries, keys)
    mask = None
    if valid_lens is not None:
        # An empty tensor with the scores' shape, only for _as_mask's checks.
        probe = queries.new_empty(queries.shape[0], queries.shape[1], keys.shape[1])
        mask = _as_mask(probe, valid_lens)  # (B, n_q, n_k)
    # The kernels take (B, h, n, d): with one head axis added, the CPU's
    # memory-efficient kernel is picked too; with 3-D inputs it holds n_q x n_k.
    out = F.scaled_dot_product_attention(
        queries.unsqueeze(1), keys.unsqueeze(1), values.unsqueeze(1),
        attn_mask=None if mask is None else mask.unsqueeze(1), dropout_p=dropout_p,
    ).squeeze(1)
    if mask is not None:
        # Our convention for a query that sees no key, whatever the backend does.
        # masked_fill, not a product: a backend's NaN there must not survive.
        out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    return out
