"""Checks for the exercises of chapter 4, attention scoring functions (how a check works: companion.exercises)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from companion.attention import DotProductAttention, masked_softmax, valid_lens_to_mask
from companion.exercises import backpropagate, call_on_copies, expect_close, expect_differentiable

__all__ = [
    "FORBIDDEN",
    "reference_additive_scores",
    "check_masked_softmax_small",
    "check_masked_softmax_thorough",
    "check_additive_scores_small",
    "check_additive_scores_thorough",
    "check_scaled_dot_product_small",
    "check_scaled_dot_product_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "masked_softmax": ["companion.attention.masked_softmax"],
    "additive_scores": ["companion.attention.AdditiveAttention"],
    "scaled_dot_product_attention": [
        "companion.attention.DotProductAttention",
        "torch.nn.functional.scaled_dot_product_attention",
    ],
}

_MS = "masked_softmax"
_AS = "additive_scores"
_SDP = "scaled_dot_product_attention"


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 1: masked softmax where a valid length may be 0
# ---------------------------------------------------------------------------------------------------------------------


def _ms_mistakes(X: Tensor, lens: Tensor) -> dict[str, Tensor]:
    """What the usual wrong masked softmaxes return, keyed by their hint.  Shapes: X (b, q, k), lens (b,) or (b, q)."""
    b, q, k = X.shape
    mask = valid_lens_to_mask(lens, q, k)  # (b, q, k)
    off_by_one = valid_lens_to_mask((lens + 1).clamp(max=k), q, k)  # arange(n_k) <= L
    return {
        "a query with valid length 0 got uniform weights 1/n_k: filling masked scores with a large negative number "
        "(d2l's -1e6) makes an all-masked row uniform. Multiply the softmax by the mask afterwards (or zero "
        "those rows) so such a query gets all-zero weights.": F.softmax(X.masked_fill(~mask, -1e6), dim=-1),
        "nothing is masked: keys at positions >= the valid length must get weight 0 (fill their scores before "
        "the softmax).": F.softmax(X, dim=-1),
        "the weights of the visible keys do not sum to one: you zeroed the masked weights after the softmax "
        "without masking the scores before it.": F.softmax(X, dim=-1) * mask,
        "masked scores were set to 0, which still gives them weight exp(0): use a large negative number (or the "
        "smallest float) instead.": F.softmax(X.masked_fill(~mask, 0.0), dim=-1),
        "the softmax runs over the queries (dim=1); each query's weights must sum to one over the keys "
        "(dim=-1).": F.softmax(X.masked_fill(~mask, -1e6), dim=1) * mask,
        "off by one: the valid length L means keys 0, ..., L-1 are visible, so the mask is "
        "torch.arange(n_k) < L, not <=.": F.softmax(X.masked_fill(~off_by_one, -1e6), dim=-1) * off_by_one,
    }


def _expect_ms(fn: Any, X: Tensor, lens: Tensor, seconds: float, grad: bool = False) -> None:
    leaf = X.clone().requires_grad_(grad)  # the learner gets a copy of it; the gradient reaches it
    actual = call_on_copies(fn, leaf, lens, name=_MS, seconds=seconds)
    empty = bool((lens == 0).any())
    if isinstance(actual, Tensor) and actual.is_floating_point() and torch.isnan(actual.detach()).any() and empty:
        raise AssertionError(
            f"`{_MS}` returned NaN for a query with valid length 0: filling masked scores with -inf and taking the "
            "softmax of a row that is all -inf gives 0/0. Fill with a large finite negative number (e.g. "
            "torch.finfo(X.dtype).min), then multiply the weights by the mask."
        )
    expect_close(actual, masked_softmax(X, lens), name=_MS, mistakes=_ms_mistakes(X, lens))
    if grad:
        expect_differentiable(actual, name=_MS, needs="the weights must depend on X, so that a gradient reaches "
                              "the scores")
        upstream = torch.linspace(-1, 1, X.numel(), dtype=X.dtype).reshape(X.shape)
        backpropagate(actual, upstream, name=_MS)
        if torch.isnan(leaf.grad).any():
            raise AssertionError(
                f"`{_MS}` gives NaN gradients for a query with valid length 0: the forward pass looks right, but "
                "a -inf fill (even when its NaNs are replaced afterwards) makes the backward pass 0/0. Fill the "
                "masked scores with a large finite negative number instead."
            )
        ref_X = X.clone().requires_grad_()
        (masked_softmax(ref_X, lens) * upstream).sum().backward()
        expect_close(leaf.grad, ref_X.grad, name=f"the gradient of {_MS}")


def check_masked_softmax_small(fn: Callable[[Tensor, Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Public check: (2, 2, 4) scores, lengths per sequence and per query, one length 0.  Shapes: fn (b, q, k), lens."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(2, 2, 4, generator=gen)
    _expect_ms(fn, X, torch.tensor([2, 3]), seconds)
    _expect_ms(fn, X, torch.tensor([3, 0]), seconds)
    _expect_ms(fn, X, torch.tensor([[1, 4], [0, 2]]), seconds)


def check_masked_softmax_thorough(fn: Callable[[Tensor, Tensor], Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, lengths 0 and n_k, float64, large scores, one key, gradients without NaN."""
    gen = torch.Generator().manual_seed(4)
    for b, q, k in [(3, 4, 6), (1, 5, 3), (4, 1, 7), (2, 3, 1)]:
        X = 3 * torch.randn(b, q, k, generator=gen)
        _expect_ms(fn, X, torch.randint(0, k + 1, (b,), generator=gen), seconds)
        _expect_ms(fn, X, torch.randint(0, k + 1, (b, q), generator=gen), seconds)
    X = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    _expect_ms(fn, X, torch.tensor([[0, 5, 2], [0, 0, 1]]), seconds)
    # Scores far from 0, as after a large d without scaling: the masked keys must still get exactly 0.
    _expect_ms(fn, 500 * torch.randn(2, 2, 6, generator=gen), torch.tensor([[4, 0], [6, 1]]), seconds)
    _expect_ms(fn, torch.randn(2, 3, 4, generator=gen), torch.tensor([[0, 2, 4], [1, 0, 3]]), seconds, grad=True)


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 2: the additive score w_v^T tanh(W_q q + W_k k)
# ---------------------------------------------------------------------------------------------------------------------


def reference_additive_scores(queries: Tensor, keys: Tensor, W_q: Tensor, W_k: Tensor, w_v: Tensor) -> Tensor:
    """Additive scores w_v^T tanh(W_q q_i + W_k k_j) (chapter 4).

    Shapes: queries (b, n_q, q), keys (b, n_k, k), W_q (h, q), W_k (h, k), w_v (h,) -> (b, n_q, n_k).
    """
    q, k = queries @ W_q.T, keys @ W_k.T  # (b, n_q, h), (b, n_k, h)
    return torch.tanh(q.unsqueeze(2) + k.unsqueeze(1)) @ w_v  # (b, n_q, n_k, h) @ (h,) -> (b, n_q, n_k)


def _as_mistakes(queries: Tensor, keys: Tensor, W_q: Tensor, W_k: Tensor, w_v: Tensor) -> dict[str, Tensor]:
    q, k = queries @ W_q.T, keys @ W_k.T  # (b, n_q, h), (b, n_k, h)
    summed = q.unsqueeze(2) + k.unsqueeze(1)  # (b, n_q, n_k, h)
    scores = torch.tanh(summed) @ w_v
    mistakes = {
        "there is no tanh: the score is w_v^T tanh(W_q q + W_k k); without the non-linearity it is only "
        "w_v^T W_q q + w_v^T W_k k, and the query's part cancels in the softmax.": summed @ w_v,
        "tanh is applied after w_v: the non-linearity goes on the hidden features, "
        "w_v^T tanh(W_q q + W_k k).": torch.tanh(summed @ w_v),
        "this is the product (W_q q) . (W_k k), a bilinear score, not additive attention: add the projected "
        "query and key, apply tanh, then project with w_v.": q @ k.transpose(1, 2),
        "you summed the hidden features instead of projecting them with w_v: multiply by w_v "
        "(torch.tanh(...) @ w_v).": torch.tanh(summed).sum(-1),
        "you returned the attention weights (softmax over the keys); return the raw scores.": F.softmax(scores, -1),
        "the result is transposed, (batch, n_k, n_q): the queries go on dim 1, so add "
        "q.unsqueeze(2) + k.unsqueeze(1).": scores.transpose(1, 2),
    }
    if W_q.shape[0] == W_q.shape[1]:
        mistakes["W_q is used untransposed: like nn.Linear weights it has shape (h, query_size), so project with "
                 "queries @ W_q.T."] = reference_additive_scores(queries, keys, W_q.T, W_k, w_v)
    if W_k.shape[0] == W_k.shape[1]:
        mistakes["W_k is used untransposed: like nn.Linear weights it has shape (h, key_size), so project with "
                 "keys @ W_k.T."] = reference_additive_scores(queries, keys, W_q, W_k.T, w_v)
    if W_q.shape == W_k.shape:
        mistakes["the keys were projected with W_q: use W_k for the keys."] = reference_additive_scores(
            queries, keys, W_q, W_q, w_v)
        mistakes["W_q and W_k are swapped: W_q projects the queries, W_k the keys."] = reference_additive_scores(
            queries, keys, W_k, W_q, w_v)
    return mistakes


def _expect_as(fn: Any, queries: Tensor, keys: Tensor, W_q: Tensor, W_k: Tensor, w_v: Tensor, seconds: float) -> None:
    original = (queries, keys, W_q, W_k, w_v)
    h = W_q.shape[0]
    shapes = (
        f"Shapes: queries (batch, n_q, {queries.shape[-1]}), W_q ({h}, {W_q.shape[1]}), so queries @ W_q.T is "
        f"(batch, n_q, {h}); the same for the keys with W_k; then q.unsqueeze(2) + k.unsqueeze(1) is "
        "(batch, n_q, n_k, h)."
    )
    actual = call_on_copies(fn, *original, name=_AS, seconds=seconds,
                            hints={"cannot be multiplied": shapes, "size of tensor": shapes})
    expect_close(actual, reference_additive_scores(*original), name=_AS, mistakes=_as_mistakes(*original))


def _as_case(gen: torch.Generator, b: int, n_q: int, n_k: int, q: int, k: int, h: int,
             dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return r(b, n_q, q), r(b, n_k, k), r(h, q) / math.sqrt(q), r(h, k) / math.sqrt(k), r(h)


def check_additive_scores_small(fn: Callable[..., Tensor], *, seconds: float = 10.0) -> None:
    """Public check: the notes' sizes (queries of size 20, keys of size 2, 8 hidden units).  Shapes: -> (2, 1, 10)."""
    gen = torch.Generator().manual_seed(1)
    _expect_as(fn, *_as_case(gen, 2, 1, 10, 20, 2, 8), seconds)
    _expect_as(fn, *_as_case(gen, 2, 3, 4, 5, 2, 3), seconds)


def check_additive_scores_thorough(fn: Callable[..., Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, square projections, equal sizes, one key, float64, autograd."""
    gen = torch.Generator().manual_seed(8)
    for b, n_q, n_k, q, k, h in [(3, 4, 6, 7, 3, 5), (1, 2, 5, 4, 4, 4), (2, 6, 1, 3, 5, 2), (4, 3, 3, 6, 6, 9)]:
        _expect_as(fn, *_as_case(gen, b, n_q, n_k, q, k, h), seconds)
    _expect_as(fn, *_as_case(gen, 2, 3, 5, 4, 6, 8, dtype=torch.float64), seconds)
    # Chapter 5 trains through this score: the result must keep the autograd graph.
    case = [t.requires_grad_() for t in _as_case(gen, 2, 2, 3, 4, 3, 5)]
    out = call_on_copies(fn, *case, name=_AS, seconds=seconds)
    expect_differentiable(out, name=_AS, needs="the scores must depend on W_q, W_k and w_v")


# ---------------------------------------------------------------------------------------------------------------------
# Exercise 3: scaled dot-product attention
# ---------------------------------------------------------------------------------------------------------------------


def _sdp(queries: Tensor, keys: Tensor, values: Tensor, lens: Optional[Tensor]) -> Tensor:
    return DotProductAttention(0.0)(queries, keys, values, lens)


def _sdp_mistakes(queries: Tensor, keys: Tensor, values: Tensor, lens: Optional[Tensor]) -> dict[str, Tensor]:
    d, n_k = queries.shape[-1], keys.shape[1]
    raw = queries @ keys.transpose(1, 2)  # (b, n_q, n_k)

    def pool(scores: Tensor, dim: int = -1, mask_it: bool = True) -> Tensor:
        if mask_it and lens is not None:
            weights = masked_softmax(scores, lens)
        else:
            weights = F.softmax(scores, dim=dim)
        return weights @ values

    mistakes = {
        "the scores are not scaled: divide q . k by sqrt(d), the query/key size (queries.shape[-1]).": pool(raw),
        "the scores are divided by d; divide by sqrt(d) so that their variance is about 1.": pool(raw / d),
        "the scores are multiplied by sqrt(d); divide by it.": pool(raw * math.sqrt(d)),
        "the scores are divided by sqrt(n_k), the number of keys; the scale is sqrt(d), with d the size of a "
        "query or key vector (queries.shape[-1]).": pool(raw / math.sqrt(n_k)),
        "the softmax runs over the queries (dim=1); each query's weights must sum to one over the keys "
        "(dim=-1).": pool(raw / math.sqrt(d), dim=1, mask_it=False),
        "you returned the attention weights (batch, n_q, n_k); return weights @ values, "
        "(batch, n_q, d_v).": masked_softmax(raw / math.sqrt(d), lens),
    }
    if lens is not None:
        mistakes["valid_lens is ignored: keys beyond each valid length must get weight 0 (use masked_softmax "
                 "instead of torch.softmax)."] = pool(raw / math.sqrt(d), mask_it=False)
        if bool((lens == 0).any()):
            mask = valid_lens_to_mask(lens, queries.shape[1], n_k)
            uniform = F.softmax((raw / math.sqrt(d)).masked_fill(~mask, -1e6), dim=-1) @ values
            mistakes["a query with valid length 0 got the mean of the values: it must get the zero vector. A -1e6 "
                     "fill (d2l's masked_softmax) gives uniform weights there; use companion.masked_softmax or "
                     "your masked_softmax from the first exercise."] = uniform
    return mistakes


def _expect_sdp(fn: Any, queries: Tensor, keys: Tensor, values: Tensor, lens: Optional[Tensor],
                seconds: float) -> None:
    original = (queries, keys, values, lens)
    actual = call_on_copies(fn, *original, name=_SDP, seconds=seconds)
    if isinstance(actual, Tensor) and actual.is_floating_point() and torch.isnan(actual.detach()).any():
        raise AssertionError(
            f"`{_SDP}` returned NaN: a query with valid length 0 sees no key, and a softmax over scores that are all "
            "-inf is 0/0. Use companion.masked_softmax, which gives such a query zero weights."
        )
    expect_close(actual, _sdp(*original), name=_SDP, mistakes=_sdp_mistakes(*original))


def _sdp_case(gen: torch.Generator, b: int, n_q: int, n_k: int, d: int, v: int,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return r(b, n_q, d), r(b, n_k, d), r(b, n_k, v)


def check_scaled_dot_product_small(fn: Callable[..., Tensor], *, seconds: float = 10.0) -> None:
    """Public check: d = 8 with and without valid lengths.  Shapes: fn (2, 3, 8), (2, 5, 8), (2, 5, 2) -> (2, 3, 2)."""
    gen = torch.Generator().manual_seed(2)
    case = _sdp_case(gen, 2, 3, 5, 8, 2)
    _expect_sdp(fn, *case, None, seconds)
    _expect_sdp(fn, *case, torch.tensor([2, 4]), seconds)


def check_scaled_dot_product_thorough(fn: Callable[..., Tensor], *, seconds: float = 10.0) -> None:
    """Hidden check: random shapes, per-query lengths, a length 0, large d, float64; equal to PyTorch's SDPA."""
    gen = torch.Generator().manual_seed(5)
    for b, n_q, n_k, d, v in [(3, 4, 6, 16, 3), (1, 1, 7, 2, 5), (2, 5, 3, 64, 1), (4, 2, 9, 5, 4)]:
        case = _sdp_case(gen, b, n_q, n_k, d, v)
        _expect_sdp(fn, *case, None, seconds)
        _expect_sdp(fn, *case, torch.randint(1, n_k + 1, (b, n_q), generator=gen), seconds)
    case = _sdp_case(gen, 2, 3, 4, 6, 2, dtype=torch.float64)
    _expect_sdp(fn, *case, torch.tensor([3, 4]), seconds)
    expect_close(call_on_copies(fn, *case, None, name=_SDP, seconds=seconds),
                 F.scaled_dot_product_attention(*case), name=_SDP)
    _expect_sdp(fn, *_sdp_case(gen, 2, 3, 5, 4, 3), torch.tensor([[0, 2, 5], [3, 0, 1]]), seconds)
