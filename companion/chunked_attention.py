"""Memory-efficient attention by chunking, with an online softmax (chapter 12).

The scores of n_q queries against n_k keys are never held at once: the queries are
cut into blocks, and each block meets the keys one block at a time. A running
maximum m, a running sum of exponentials l and an unnormalised output o per query
(Milakov & Gimelshein 2018; Rabe & Staats 2021; the idea behind FlashAttention)
let each new block of keys be merged into what the earlier blocks gave
(``online_softmax_merge``), so the result is exactly softmax(Q K^T / sqrt(d)) V,
as ``DotProductAttention`` computes it without dropout. The working memory is one
block of scores, whatever n is. The gradient is autograd's through the loop: it
equals the naive one, but autograd keeps every block for the backward pass, so
only the forward pass (inference) is memory-efficient here.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .attention import _check_qkv, _check_same_width, _lengths_per_query
from .utils import check_positive_int

__all__ = ["online_softmax_merge", "partial_attention", "chunked_attention"]


def partial_attention(
    queries: Tensor, keys: Tensor, values: Tensor, mask: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Attention of queries over one block of keys, as a partial result (ch. 12).

    Shapes: queries (B, n_q, d), keys (B, n_k, d), values (B, n_k, d_v), mask None
    or bool broadcastable to (B, n_q, n_k), True = may attend -> m (B, n_q, 1), the
    largest visible score; l (B, n_q, 1), sum of exp(score - m); o (B, n_q, d_v),
    sum of exp(score - m) * value (not yet divided by l). A query that sees no key
    of the block gets m = the dtype's lowest value and l = o = 0.
    """
    d = queries.shape[-1]
    scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)  # (B, n_q, n_k)
    if mask is not None:
        # Lowest finite value, not -inf: m - m stays 0, never inf - inf = NaN.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    m = scores.amax(dim=-1, keepdim=True)  # (B, n_q, 1)
    p = torch.exp(scores - m)  # (B, n_q, n_k), each in (0, 1]
    if mask is not None:
        p = p * mask  # a fully masked row has exp(0) = 1 everywhere: zero it
    return m, p.sum(dim=-1, keepdim=True), torch.bmm(p, values)


def online_softmax_merge(
    m_a: Tensor, l_a: Tensor, o_a: Tensor, m_b: Tensor, l_b: Tensor, o_b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Merge two partial results over disjoint keys into one (ch. 12, eq. merge).

    Shapes: m_a, l_a, m_b, l_b (..., 1); o_a, o_b (..., d_v) -> m, l (..., 1) and
    o (..., d_v). Each part was computed with its own maximum; both are rescaled to
    the larger one, m = max(m_a, m_b), so no exponential exceeds 1.
    """
    m = torch.maximum(m_a, m_b)
    scale_a, scale_b = torch.exp(m_a - m), torch.exp(m_b - m)  # each in (0, 1]
    return m, scale_a * l_a + scale_b * l_b, scale_a * o_a + scale_b * o_b


def chunked_attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    valid_lens: Optional[Tensor] = None,
    chunk_size: int = 512,
) -> Tensor:
    """DotProductAttention without dropout, one block of scores at a time (ch. 12).

    Shapes: queries (B, n_q, d), keys (B, n_k, d), values (B, n_k, d_v), valid_lens
    as in masked_softmax -> (B, n_q, d_v). Queries and keys go in blocks of
    chunk_size; a block of keys that no query of the block may see is skipped, so
    a local mask also saves the time. A query that sees no key gives zeros.
    """
    _check_chunked_inputs(queries, keys, values, chunk_size)
    mask_of = _block_masks(queries, keys, valid_lens)
    n_q, n_k = queries.shape[1], keys.shape[1]
    outputs = []
    for q0 in range(0, n_q, chunk_size):
        q = queries[:, q0:q0 + chunk_size]  # (B, chunk_size, d)
        state = None
        # Only the blocks of keys that some query of this block may see.
        for k0 in _visible_blocks(mask_of, q0, q0 + q.shape[1], n_k, chunk_size):
            mask = mask_of(q0, q0 + q.shape[1], k0, min(k0 + chunk_size, n_k))
            part = partial_attention(q, keys[:, k0:k0 + chunk_size],
                                     values[:, k0:k0 + chunk_size], mask)
            state = part if state is None else online_softmax_merge(*state, *part)
        if state is None:  # these queries see no key at all
            outputs.append(q.new_zeros(q.shape[0], q.shape[1], values.shape[-1]))
            continue
        _, l, o = state  # (B, chunk_size, 1), (B, chunk_size, d_v)
        outputs.append(o / torch.where(l > 0, l, torch.ones_like(l)))
    return torch.cat(outputs, dim=1)  # (B, n_q, d_v)


def _check_chunked_inputs(
    queries: Tensor, keys: Tensor, values: Tensor, chunk_size: object
) -> None:
    _check_qkv(queries, keys, values)
    _check_same_width(queries, keys)
    check_positive_int("chunk_size", chunk_size)


def _visible_blocks(mask_of, q0: int, q1: int, n_k: int, chunk_size: int) -> list[int]:
    """The first key of every block of keys that a query in q0 .. q1 - 1 may see."""
    mask = mask_of(q0, q1, 0, n_k)  # (B, chunk_size, n_k) or None
    if mask is None:
        return list(range(0, n_k, chunk_size))
    seen = mask.any(dim=1).any(dim=0)  # (n_k,): visible to some query of the block
    padded = torch.nn.functional.pad(seen, (0, -n_k % chunk_size))  # whole blocks
    blocks = padded.view(-1, chunk_size).any(dim=-1)  # one per block of keys
    return (blocks.nonzero().flatten() * chunk_size).tolist()


def _block_masks(queries: Tensor, keys: Tensor, valid_lens: Optional[Tensor]):
    """A function (q0, q1, k0, k1) -> the block's bool mask (B, q1-q0, k1-k0) or None.

    Never builds the whole (B, n_q, n_k) mask from lengths; a given bool mask is
    only sliced (its expand is a view).
    """
    B, n_q, n_k = queries.shape[0], queries.shape[1], keys.shape[1]
    if valid_lens is None:
        return lambda q0, q1, k0, k1: None
    if not isinstance(valid_lens, Tensor):
        raise ValueError("valid_lens must be None or a torch.Tensor, "
                         f"got {type(valid_lens).__name__}")
    if valid_lens.dtype == torch.bool:
        fits = valid_lens.dim() == 3 and all(
            m in (1, x) for m, x in zip(valid_lens.shape, (B, n_q, n_k)))
        if not fits:
            raise ValueError(
                "a boolean mask must be 3-D and broadcast to the scores' shape "
                f"{(B, n_q, n_k)} (each size 1 or equal), got mask "
                f"{tuple(valid_lens.shape)}")
        full = valid_lens.to(queries.device).expand(B, n_q, n_k)  # a view
        return lambda q0, q1, k0, k1: full[:, q0:q1, k0:k1]
    if valid_lens.shape[0] != B:
        raise ValueError(f"valid_lens must have batch size {B} like the queries, "
                         f"got valid_lens {tuple(valid_lens.shape)}")
    lens = _lengths_per_query(valid_lens.to(queries.device), n_q, n_k)  # (B, n_q)
    positions = torch.arange(n_k, device=queries.device)  # (n_k,)
    return lambda q0, q1, k0, k1: (
        positions[None, None, k0:k1] < lens[:, q0:q1, None])
