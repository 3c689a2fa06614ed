"""Checks for the exercises of chapter 9, the Transformer encoder-decoder (how a check works: companion.exercises)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close, expect_returned

__all__ = [
    "FORBIDDEN",
    "check_causal_mask_small",
    "check_causal_mask_thorough",
    "check_cached_attention_step_small",
    "check_cached_attention_step_thorough",
    "check_cross_attention_small",
    "check_cross_attention_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "causal_mask": ["companion.transformer_seq2seq.causal_mask"],
    "cached_attention_step": ["companion.multihead.KVCache"],
    "cross_attention": [
        "companion.attention.DotProductAttention",
        "companion.attention.fused_dot_product_attention",
        "companion.multihead.MultiHeadAttention",
        "companion.transformer_seq2seq.TransformerDecoderBlock",
        "torch.nn.functional.scaled_dot_product_attention",
        "torch.nn.MultiheadAttention",
        "torch.nn.functional.multi_head_attention_forward",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: the causal mask, True where key j <= query i
# ---------------------------------------------------------------------------


def _causal(n: int) -> Tensor:
    i = torch.arange(n)
    return i[None, :] <= i[:, None]  # (n, n): row = query, column = key


def _causal_mistakes(n: int) -> dict[str, Tensor]:
    """What the usual wrong masks look like, keyed by the hint that names them (all bool, (n, n))."""
    right = _causal(n)
    return {
        "the mask is transposed (upper triangle): it shows each query the future and hides the past. Rows are "
        "queries, columns are keys, and query i may see keys 0 .. i, at or before it: the lower triangle, "
        "torch.tril.": right.T,
        "the diagonal is False: a position may attend to itself (key j = i), only later keys are hidden. "
        "Use j <= i, not j < i.": right & ~torch.eye(n, dtype=torch.bool),
        "True and False are swapped: here True must mean 'may attend' (as in masked_softmax), so the allowed "
        "keys j <= i are True. (PyTorch's attn_mask and key_padding_mask use the opposite convention.)": ~right,
        "every entry is True: nothing is hidden; key j must be hidden from query i when j > i.": (
            torch.ones(n, n, dtype=torch.bool)),
    }


def _check_causal_on(fn: Callable[..., Any], n: int, seconds: float) -> None:
    actual = call_on_copies(fn, n, name="causal_mask", seconds=seconds)
    expected = _causal(n)
    if isinstance(actual, Tensor) and actual.dtype != torch.bool:
        if actual.shape == expected.shape and torch.equal(actual.to(torch.float64),
                                                          expected.to(torch.float64)):
            raise AssertionError(
                f"`causal_mask` returned the right pattern as {actual.dtype}; return a bool tensor "
                "(compare with <=, or call .bool()): masked_softmax treats a non-bool mask as lengths."
            )
        if actual.is_floating_point() and actual.shape == expected.shape:
            zeros_where_allowed = (actual[expected] == 0).all() and torch.isinf(actual[~expected]).all()
            if zeros_where_allowed:
                raise AssertionError(
                    "`causal_mask` returned an additive float mask (0 and -inf); this exercise asks for a "
                    "bool mask, True where query i may attend to key j."
                )
    if isinstance(actual, Tensor) and actual.dtype == torch.bool and actual.shape == expected.shape \
            and not torch.equal(actual, expected):
        for hint, wrong in _causal_mistakes(n).items():
            if torch.equal(actual, wrong):
                raise AssertionError(f"`causal_mask`: {hint}")
    if isinstance(actual, Tensor) and actual.shape != expected.shape:
        raise AssertionError(
            f"`causal_mask({n})` returned shape {tuple(actual.shape)}, expected ({n}, {n}): one row per query "
            "position, one column per key position."
        )
    expect_close(actual.to(torch.float32) if isinstance(actual, Tensor) else actual,
                 expected.to(torch.float32), name="causal_mask")


def check_causal_mask_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: n = 4."""
    _check_causal_on(fn, 4, seconds)


def check_causal_mask_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: n = 7, 2, 33 and 1 (a single position); it also masks real scores correctly."""
    for n in (7, 2, 33, 1):
        _check_causal_on(fn, n, seconds)
    # Used as masked_softmax's mask, the learner's mask must give causal weights.
    from companion.attention import masked_softmax

    scores = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(0))
    mask = call_on_copies(fn, 5, name="causal_mask", seconds=seconds)
    weights = masked_softmax(scores, mask[None])
    if not torch.equal(weights[:, ~_causal(5)], torch.zeros_like(weights[:, ~_causal(5)])):
        raise AssertionError("`causal_mask`: weights on future keys are not zero when used in masked_softmax.")


# ---------------------------------------------------------------------------
# Exercise 2: one decoding step with a key-value cache (one head)
# ---------------------------------------------------------------------------


def _attend(queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, scale: float,
            dim: int = -1) -> tuple[Tensor, Tensor]:
    """Softmax(queries keys^T / scale), masked where ``mask`` is False, over ``dim``; returns (output, weights)."""
    scores = queries @ keys.transpose(1, 2) / scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return weights @ values, weights


def _step(q: Tensor, k: Tensor, v: Tensor, K_cache: Tensor, V_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    K = torch.cat([K_cache, k], dim=1)  # (b, t + 1, d)
    V = torch.cat([V_cache, v], dim=1)  # (b, t + 1, d_v)
    return _attend(q, K, V, None, math.sqrt(q.shape[-1]))[0], K, V  # output (b, 1, d_v)


def _step_output_mistakes(q: Tensor, k: Tensor, v: Tensor, K_cache: Tensor, V_cache: Tensor) -> dict[str, Tensor]:
    """Wrong outputs (b, 1, d_v) of the step, keyed by their hint."""
    d = q.shape[-1]
    K = torch.cat([K_cache, k], dim=1)
    V = torch.cat([V_cache, v], dim=1)
    scores = q @ K.transpose(1, 2)  # (b, 1, t + 1)
    mistakes = {
        "the scores are not scaled: divide q K^T by sqrt(d), d = q.shape[-1].": torch.softmax(scores, -1) @ V,
        "the scores are divided by d; divide by sqrt(d).": torch.softmax(scores / d, -1) @ V,
        "the softmax runs over the batch or the query axis; it must run over the keys, dim=-1.": (
            torch.softmax(scores / math.sqrt(d), dim=0) @ V),
        "the output is a weighted sum of the keys; weight the values V instead.": (
            torch.softmax(scores / math.sqrt(d), -1) @ K if K.shape[-1] == V.shape[-1] else None),
    }
    # Attending to the cache alone: at the first step the cache is empty and the output all zeros.
    mistakes["the new position attends only to the cache: append the new key and value first (the "
             "position may attend to itself), then attend over all t + 1 keys."] = (
        torch.softmax(q @ K_cache.transpose(1, 2) / math.sqrt(d), -1) @ V_cache)
    if K_cache.shape[1] > 0:
        mistakes["the new position attends only to itself: the cached keys and values are the earlier "
                 "positions and must be attended to as well."] = v
    return {h: m for h, m in mistakes.items() if m is not None}


def _call_for_tuple(fn: Callable[..., Any], args: tuple[Tensor, ...], *, name: str, parts: str, what: str,
                    seconds: float) -> tuple[Any, ...]:
    """Call the learner's ``fn`` on copies of ``args``; its result must be a tuple of the named ``parts``."""
    result = call_on_copies(fn, *args, name=name, seconds=seconds)
    expect_returned(result, name=name)
    size = len(parts.split(","))
    if not isinstance(result, tuple) or len(result) != size:
        raise AssertionError(
            f"`{name}` should return a tuple ({parts}): {what}; got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple) else "") + "."
        )
    return result


def _check_step_on(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> None:
    result = _call_for_tuple(fn, args, name="cached_attention_step", parts="output, K, V",
                             what="the attention output for the new position and the two extended caches",
                             seconds=seconds)
    out, K, V = result
    exp_out, exp_K, exp_V = _step(*args)
    K_cache, V_cache = args[3], args[4]
    k, v = args[1], args[2]
    if isinstance(K, Tensor) and K.shape == exp_K.shape and K_cache.shape[1] > 0 \
            and torch.allclose(K, torch.cat([k, K_cache], dim=1)):
        raise AssertionError(
            "`cached_attention_step`: the new key is put in front of the cache; append it at the end "
            "(torch.cat([K_cache, k], dim=1)), so that position t stays at index t."
        )
    if isinstance(K, Tensor) and K.shape == K_cache.shape and torch.equal(K, K_cache):
        raise AssertionError("`cached_attention_step` returned the old cache K: return it with the new key appended, "
                             "shape (batch, t + 1, d).")
    expect_close(out, exp_out, name="cached_attention_step (output)", mistakes=_step_output_mistakes(*args))
    expect_close(K, exp_K, name="cached_attention_step (K)")
    if isinstance(V, Tensor) and V.shape == exp_V.shape and K_cache.shape[1] > 0 \
            and torch.allclose(V, torch.cat([v, V_cache], dim=1)):
        raise AssertionError(
            "`cached_attention_step`: the new value is put in front of the cache; append it at the end."
        )
    expect_close(V, exp_V, name="cached_attention_step (V)")


def _step_args(b: int, t: int, d: int, d_v: int, gen: torch.Generator,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    return (
        2 * torch.randn(b, 1, d, generator=gen, dtype=dtype),  # scaled up, so a missing sqrt(d) shows
        2 * torch.randn(b, 1, d, generator=gen, dtype=dtype),
        torch.randn(b, 1, d_v, generator=gen, dtype=dtype),
        2 * torch.randn(b, t, d, generator=gen, dtype=dtype),
        torch.randn(b, t, d_v, generator=gen, dtype=dtype),
    )


def check_cached_attention_step_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: batch 2, three cached positions, d = 4, d_v = 3."""
    _check_step_on(fn, _step_args(2, 3, 4, 3, torch.Generator().manual_seed(0)), seconds)


def check_cached_attention_step_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: an empty cache (the first step), d = d_v, float64, ten steps in a row against full attention."""
    gen = torch.Generator().manual_seed(1)
    for b, t, d, d_v in ((1, 0, 4, 4), (3, 1, 8, 8), (2, 6, 5, 7), (4, 12, 16, 16)):
        _check_step_on(fn, _step_args(b, t, d, d_v, gen), seconds)
    _check_step_on(fn, _step_args(2, 4, 6, 3, gen, dtype=torch.float64), seconds)
    # Ten steps fed back through the learner's cache equal causal attention over the whole sequence.
    Q, Kall, Vall = (torch.randn(2, 10, 4, generator=gen) for _ in range(3))
    K, V = Kall[:, :0], Vall[:, :0]
    outs = []
    for i in range(10):
        result = call_on_copies(fn, Q[:, i:i + 1], Kall[:, i:i + 1], Vall[:, i:i + 1], K, V,
                                name="cached_attention_step", seconds=seconds)
        out, K, V = result
        outs.append(out)
    scores = Q @ Kall.transpose(1, 2) / 2.0  # (2, 10, 10), sqrt(4) = 2
    future = torch.ones(10, 10, dtype=torch.bool).triu(1)
    full = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ Vall
    expect_close(torch.cat(outs, dim=1), full, name="cached_attention_step (ten steps in a row)")


# ---------------------------------------------------------------------------
# Exercise 3: encoder-decoder attention (one head), queries from the decoder, keys and values from the encoder
# ---------------------------------------------------------------------------


def _source_mask(src_valid_len: Tensor, m: int, n: int) -> Tensor:
    """(b, m, n) bool: True where source position j < src_valid_len[b], the same for every target row."""
    return (torch.arange(n)[None, None, :] < src_valid_len[:, None, None]).expand(-1, m, n)


def _cross(H: Tensor, E: Tensor, src_valid_len: Tensor, W_q: Tensor, W_k: Tensor,
           W_v: Tensor) -> tuple[Tensor, Tensor]:
    Q, K, V = H @ W_q, E @ W_k, E @ W_v  # (b, m, d_h), (b, n, d_h), (b, n, d_v)
    mask = _source_mask(src_valid_len, H.shape[1], E.shape[1])
    return _attend(Q, K, V, mask, math.sqrt(W_q.shape[1]))


def _cross_mistakes(H: Tensor, E: Tensor, src_valid_len: Tensor, W_q: Tensor, W_k: Tensor,
                    W_v: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """The (output, weights) of the usual wrong versions, keyed by the hint that names them."""
    m, n, d_h = H.shape[1], E.shape[1], W_q.shape[1]
    Q, K, V = H @ W_q, E @ W_k, E @ W_v
    mask = _source_mask(src_valid_len, m, n)
    scale = math.sqrt(d_h)
    return {
        "the keys and values come from the decoder (H): that is the decoder's self-attention. In "
        "encoder-decoder attention only the queries come from the decoder; the keys and values are the "
        "encoder's outputs, E @ W_k and E @ W_v, so the weights have one column per source position.": (
            _attend(Q, H @ W_k, H @ W_v, None, scale)),
        "the queries come from the encoder (E) and the keys from the decoder: the roles are swapped. Each target "
        "position asks the source, so the queries are H @ W_q (one row per target position) and the keys and "
        "values E @ W_k and E @ W_v.": _attend(E @ W_q, H @ W_k, H @ W_v, None, scale),
        "the padded source positions get weight: mask the scores of the keys j >= src_valid_len[b] (to -inf, or "
        "use masked_softmax with the valid lengths) before the softmax.": _attend(Q, K, V, None, scale),
        "a causal mask is applied: encoder-decoder attention needs none, since the whole source is known before "
        "decoding starts. Hide only the padded source positions.": _attend(
            Q, K, V, mask & torch.ones(m, n, dtype=torch.bool).tril(), scale),
        "the scores are not scaled: divide by sqrt(d_h), the width of the projected queries and keys "
        "(W_q.shape[1]).": _attend(Q, K, V, mask, 1.0),
        "the scores are divided by sqrt(d), the model width; divide by sqrt(d_h), the width of the projected "
        "queries and keys (W_q.shape[1]).": _attend(Q, K, V, mask, math.sqrt(H.shape[-1])),
        "the scores are divided by d_h; divide by sqrt(d_h).": _attend(Q, K, V, mask, float(d_h)),
        "the output is a weighted sum of the unprojected encoder outputs E; weight the values E @ W_v.": (
            _attend(Q, K, E, mask, scale)),
        "the output is a weighted sum of the keys E @ W_k; weight the values E @ W_v.": (
            _attend(Q, K, K, mask, scale)),
    }


def _check_cross_on(fn: Callable[..., Any], args: tuple[Tensor, ...], seconds: float) -> None:
    output, weights = _call_for_tuple(fn, args, name="cross_attention", parts="output, weights",
                                      what="the attention output of every target position and the (batch, m, n) "
                                      "weights", seconds=seconds)
    exp_output, exp_weights = _cross(*args)
    if isinstance(weights, Tensor) and weights.shape == exp_weights.shape and weights.shape[1] > 1:
        real = _source_mask(args[2], *exp_weights.shape[1:])[:, 0]  # (b, n): the real source columns
        per_column = weights.detach().double().sum(dim=1)  # (b, n): summed over the target positions
        per_row = weights.detach().double().sum(dim=-1)  # (b, m): summed over the source positions
        if torch.allclose(per_column[real], torch.ones_like(per_column[real]), atol=1e-4) \
                and not torch.allclose(per_row, torch.ones_like(per_row), atol=1e-4):
            raise AssertionError(
                "`cross_attention (weights)`: the softmax runs over the target positions (dim=1); every target "
                "position needs a distribution over the source positions, dim=-1."
            )
    mistakes = _cross_mistakes(*args)
    expect_close(weights, exp_weights, name="cross_attention (weights)",
                 mistakes={hint: w for hint, (_, w) in mistakes.items()})
    expect_close(output, exp_output, name="cross_attention (output)",
                 mistakes={hint: o for hint, (o, _) in mistakes.items()})


def _cross_args(b: int, m: int, n: int, d: int, d_h: int, d_v: int, valid: list[int], gen: torch.Generator,
                dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    return (
        torch.randn(b, m, d, generator=gen, dtype=dtype),  # H: the decoder's vectors
        torch.randn(b, n, d, generator=gen, dtype=dtype),  # E: the encoder's outputs
        torch.tensor(valid),
        torch.randn(d, d_h, generator=gen, dtype=dtype),  # unscaled weights: a wrong scale shows
        torch.randn(d, d_h, generator=gen, dtype=dtype),
        torch.randn(d, d_v, generator=gen, dtype=dtype) / math.sqrt(d),
    )


def check_cross_attention_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: batch 2, three target and five source positions (one source padded to 3), d = 8, d_h = 4."""
    _check_cross_on(fn, _cross_args(2, 3, 5, 8, 4, 4, [5, 3], torch.Generator().manual_seed(0)), seconds)


def check_cross_attention_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: as many target as source positions, a single target position, d_v != d_h, float64, and a
    decoder block's cross-attention reproduced (one head of companion.MultiHeadAttention)."""
    gen = torch.Generator().manual_seed(1)
    for b, m, n, d, d_h, d_v, valid in ((3, 6, 6, 8, 8, 8, [6, 2, 4]), (2, 1, 7, 6, 3, 5, [1, 7]),
                                        (4, 9, 4, 16, 4, 8, [4, 4, 3, 1])):
        _check_cross_on(fn, _cross_args(b, m, n, d, d_h, d_v, valid, gen), seconds)
    _check_cross_on(fn, _cross_args(2, 5, 3, 4, 2, 3, [3, 2], gen, dtype=torch.float64), seconds)
    # One head of the course's MultiHeadAttention, used as encoder-decoder attention, is this function.
    from companion.multihead import MultiHeadAttention

    with torch.random.fork_rng():
        torch.manual_seed(2)
        mha = MultiHeadAttention(8, 1, 0.0, query_size=8, key_size=8, value_size=8).eval()
    H, E = torch.randn(2, 4, 8, generator=gen), torch.randn(2, 6, 8, generator=gen)
    src_valid_len = torch.tensor([6, 3])
    with torch.no_grad():
        expected = mha(H, E, E, src_valid_len)  # (2, 4, 8), before the output projection W_o
        W_q, W_k, W_v = (layer.weight.T.contiguous() for layer in (mha.W_q, mha.W_k, mha.W_v))
    result = call_on_copies(fn, H, E, src_valid_len, W_q, W_k, W_v, name="cross_attention", seconds=seconds)
    expect_returned(result, name="cross_attention")
    output = result[0] if isinstance(result, tuple) and result else result
    with torch.no_grad():
        mixed = mha.W_o(output.to(expected.dtype)) if isinstance(output, Tensor) and output.shape == (2, 4, 8) \
            else output
    expect_close(mixed, expected, name="cross_attention (as one head of MultiHeadAttention)")
