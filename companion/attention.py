"""Attention scoring functions (chapter 4): masked softmax, additive and scaled dot-product attention.

Names and call signatures follow d2l (``masked_softmax(X, valid_lens)``,
``AdditiveAttention``, ``DotProductAttention``), so code written against one
reads against the other. Unlike d2l, a query that may attend to no key at all
gets all-zero weights (so its output is the zero vector), never uniform weights
and never NaN.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    """Turn valid lengths into a boolean mask, True = may attend (chapter 4, masked softmax).

    Shapes: valid_lens (batch,) or (batch, n_q) integers -> mask (batch, n_q, n_k).
    Key j is visible to a query whose valid length is L exactly when j < L.
    """
    if not isinstance(valid_lens, Tensor):
        raise ValueError(
            f"valid_lens must be a torch.Tensor, got {type(valid_lens).__name__}"
        )
    if valid_lens.dtype == torch.bool or valid_lens.is_floating_point() or valid_lens.is_complex():
        raise ValueError(
            f"valid_lens must hold integers (a length per sequence or per query), got dtype {valid_lens.dtype}"
        )
    if valid_lens.dim() == 1:
        lens = valid_lens[:, None].expand(-1, n_q)  # (batch,) -> (batch, n_q)
    elif valid_lens.dim() == 2:
        if valid_lens.shape[1] != n_q:
            raise ValueError(
                f"per-query valid_lens must have shape (batch, n_q) with n_q = {n_q}, "
                f"got {tuple(valid_lens.shape)}"
            )
        lens = valid_lens
    else:
        raise ValueError(
            f"valid_lens must have shape (batch,) or (batch, n_q), got {tuple(valid_lens.shape)}"
        )
    if lens.numel() and (lens.min() < 0 or lens.max() > n_k):
        raise ValueError(
            f"valid_lens must lie in [0, n_k] = [0, {n_k}], "
            f"got values from {int(lens.min())} to {int(lens.max())}"
        )
    positions = torch.arange(n_k, device=lens.device)  # (n_k,)
    return positions[None, None, :] < lens[:, :, None]  # (batch, n_q, n_k)


def _as_mask(X: Tensor, valid_lens: Tensor) -> Tensor:
    """The boolean mask (batch, n_q, n_k) meant by valid_lens, checked against X."""
    batch, n_q, n_k = X.shape
    if not isinstance(valid_lens, Tensor):
        raise ValueError(
            f"valid_lens must be None or a torch.Tensor, got {type(valid_lens).__name__}"
        )
    if valid_lens.dtype == torch.bool:
        # 3-D only: a 2-D (batch, n_k) padding mask would silently broadcast as
        # (n_q, n_k) whenever batch == n_q.
        fits = valid_lens.dim() == 3 and all(
            m in (1, x) for m, x in zip(valid_lens.shape, X.shape)
        )
        if not fits:
            raise ValueError(
                f"a boolean mask must be 3-D and broadcast to the scores' shape {tuple(X.shape)} "
                f"(each size 1 or equal), got mask {tuple(valid_lens.shape)}"
            )
        return valid_lens.to(X.device).expand(X.shape)
    if valid_lens.shape[0] != batch:
        raise ValueError(
            f"valid_lens must have batch size {batch} like the scores {tuple(X.shape)}, "
            f"got valid_lens {tuple(valid_lens.shape)}"
        )
    return valid_lens_to_mask(valid_lens.to(X.device), n_q, n_k)


def masked_softmax(X: Tensor, valid_lens: Optional[Tensor] = None) -> Tensor:
    """Softmax over the last axis that ignores masked keys (chapter 4, eq. masked-softmax; d2l name).

    Shapes: X (batch, n_q, n_k); valid_lens None, integer (batch,) or (batch, n_q),
    or a 3-D bool mask broadcastable to (batch, n_q, n_k), e.g. (batch, 1, n_k),
    with True = may attend -> weights (batch, n_q, n_k).
    A fully masked row gets all-zero weights (d2l returns uniform weights
    there); forward and backward stay free of NaN.
    """
    _check_tensor("X", X, 3)
    if valid_lens is None:
        return F.softmax(X, dim=-1)
    mask = _as_mask(X, valid_lens)
    # The smallest finite value, not -inf: a fully masked row then gives a
    # finite softmax (uniform), which the final product with the mask zeroes.
    # A row with at least one visible key gives exp(min - max) = 0 exactly.
    filled = X.masked_fill(~mask, torch.finfo(X.dtype).min)
    return F.softmax(filled, dim=-1) * mask


def _check_qkv(queries: Tensor, keys: Tensor, values: Tensor) -> None:
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        _check_tensor(name, t, 3)
    if not queries.shape[0] == keys.shape[0] == values.shape[0]:
        raise ValueError(
            "queries, keys and values must have the same batch size, got "
            f"queries {tuple(queries.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}"
        )
    if keys.shape[1] != values.shape[1]:
        raise ValueError(
            "keys and values must hold the same number of items (dim 1), got "
            f"keys {tuple(keys.shape)} and values {tuple(values.shape)}"
        )


class AdditiveAttention(nn.Module):
    """Additive attention a(q, k) = w_v^T tanh(W_q q + W_k k) (chapter 4, eq. additive; d2l name).

    Shapes: forward(queries (batch, n_q, query_size), keys (batch, n_k, key_size),
    values (batch, n_k, v), valid_lens as in masked_softmax) -> (batch, n_q, v).
    With key_size and query_size given, the weights exist at once (d2l 0.17);
    without them they are created on the first call (LazyLinear, d2l 1.0).
    """

    def __init__(
        self,
        num_hiddens: int,
        dropout: float,
        key_size: Optional[int] = None,
        query_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_hiddens, int) or num_hiddens < 1:
            raise ValueError(f"num_hiddens must be a positive int, got {num_hiddens!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        # No bias: a bias b_q + b_k would only shift the argument of tanh.
        self.W_k = (nn.Linear(key_size, num_hiddens, bias=False) if key_size is not None
                    else nn.LazyLinear(num_hiddens, bias=False))
        self.W_q = (nn.Linear(query_size, num_hiddens, bias=False) if query_size is not None
                    else nn.LazyLinear(num_hiddens, bias=False))
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Optional[Tensor] = None

    def forward(
        self, queries: Tensor, keys: Tensor, values: Tensor, valid_lens: Optional[Tensor] = None
    ) -> Tensor:
        """Weights from the additive score, then their average of the values.

        Shapes: queries (batch, n_q, query_size), keys (batch, n_k, key_size),
        values (batch, n_k, v) -> (batch, n_q, v); weights stored in
        self.attention_weights (batch, n_q, n_k).
        """
        _check_qkv(queries, keys, values)
        for name, t, layer in (("queries", queries, self.W_q), ("keys", keys, self.W_k)):
            if not isinstance(layer, nn.LazyLinear) and t.shape[-1] != layer.in_features:
                raise ValueError(
                    f"{name} must have {layer.in_features} features (last dim), "
                    f"got {name} {tuple(t.shape)}"
                )
        q, k = self.W_q(queries), self.W_k(keys)  # (batch, n_q, h), (batch, n_k, h)
        # Broadcast every query against every key: (batch, n_q, 1, h) + (batch, 1, n_k, h).
        features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))  # (batch, n_q, n_k, h)
        scores = self.w_v(features).squeeze(-1)  # (batch, n_q, n_k)
        self.attention_weights = masked_softmax(scores, valid_lens)
        # (batch, n_q, n_k) @ (batch, n_k, v) -> (batch, n_q, v)
        return torch.bmm(self.dropout(self.attention_weights), values)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention softmax(Q K^T / sqrt(d)) V (chapter 4, eq. scaled-dot; d2l name).

    Shapes: forward(queries (batch, n_q, d), keys (batch, n_k, d), values (batch, n_k, v),
    valid_lens as in masked_softmax) -> (batch, n_q, v).
    The readable path; fused_dot_product_attention gives the same numbers faster.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Optional[Tensor] = None

    def forward(
        self, queries: Tensor, keys: Tensor, values: Tensor, valid_lens: Optional[Tensor] = None
    ) -> Tensor:
        """One score per (query, key) pair, softmax over the keys, average of the values.

        Shapes: queries (batch, n_q, d), keys (batch, n_k, d), values (batch, n_k, v)
        -> (batch, n_q, v); weights stored in self.attention_weights (batch, n_q, n_k).
        """
        _check_qkv(queries, keys, values)
        if queries.shape[-1] != keys.shape[-1]:
            raise ValueError(
                "queries and keys must have the same feature size d (last dim), got "
                f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)}"
            )
        d = queries.shape[-1]
        # (batch, n_q, d) @ (batch, d, n_k) -> (batch, n_q, n_k); dividing by
        # sqrt(d) keeps the scores' variance near 1 whatever d is.
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
        self.attention_weights = masked_softmax(scores, valid_lens)
        # (batch, n_q, n_k) @ (batch, n_k, v) -> (batch, n_q, v)
        return torch.bmm(self.dropout(self.attention_weights), values)


def fused_dot_product_attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    valid_lens: Optional[Tensor] = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """DotProductAttention through PyTorch's fused kernel (chapter 4, fast path).

    Shapes: queries (batch, n_q, d), keys (batch, n_k, d), values (batch, n_k, v),
    valid_lens as in masked_softmax -> (batch, n_q, v).
    Does not return the weights; a fully masked query gives the zero vector, as
    in DotProductAttention.
    """
    _check_qkv(queries, keys, values)
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(
            "queries and keys must have the same feature size d (last dim), got "
            f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)}"
        )
    mask = None
    if valid_lens is not None:
        # An empty tensor with the scores' shape, only for _as_mask's checks.
        probe = queries.new_empty(queries.shape[0], queries.shape[1], keys.shape[1])
        mask = _as_mask(probe, valid_lens)
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, dropout_p=dropout_p)
    if mask is not None:
        # Our convention for a query that sees no key, whatever the backend does.
        out = out * mask.any(dim=-1, keepdim=True)
    return out
