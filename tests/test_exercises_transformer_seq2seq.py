"""The exercise checks of chapter 9 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import math

import pytest
import torch

from companion.exercises import transformer_seq2seq as ex
from companion.transformer_seq2seq import causal_mask

MASK_CHECKS = [ex.check_causal_mask_small, ex.check_causal_mask_thorough]
STEP_CHECKS = [ex.check_cached_attention_step_small, ex.check_cached_attention_step_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def mask_ok(n):
    return torch.tril(torch.ones(n, n, dtype=torch.bool))


def mask_by_comparison(n):
    i = torch.arange(n)
    return i[:, None] >= i[None, :]


def mask_loop(n):
    m = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(i + 1):
            m[i, j] = True
    return m


def step_ok(q, k, v, K_cache, V_cache):
    K = torch.cat([K_cache, k], dim=1)
    V = torch.cat([V_cache, v], dim=1)
    w = torch.softmax(q @ K.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ V, K, V


def step_bmm(q, k, v, K_cache, V_cache):
    K, V = torch.cat((K_cache, k), 1), torch.cat((V_cache, v), 1)
    scores = torch.bmm(q, K.permute(0, 2, 1)) * q.shape[-1] ** -0.5
    return torch.bmm(scores.softmax(-1), V), K, V


def step_fused(q, k, v, K_cache, V_cache):
    K, V = torch.cat((K_cache, k), 1), torch.cat((V_cache, v), 1)
    return torch.nn.functional.scaled_dot_product_attention(q, K, V), K, V


@pytest.mark.parametrize("check", MASK_CHECKS)
@pytest.mark.parametrize("solution", [mask_ok, mask_by_comparison, mask_loop, causal_mask])
def test_mask_checks_accept_correct_answers(check, solution):
    check(solution)


@pytest.mark.parametrize("check", STEP_CHECKS)
@pytest.mark.parametrize("solution", [step_ok, step_bmm, step_fused])
def test_step_checks_accept_correct_answers(check, solution):
    check(solution)


# --- diagnosed mistakes --------------------------------------------------------------------------


MASK_MISTAKES = [
    (lambda n: torch.triu(torch.ones(n, n, dtype=torch.bool)), r"transposed \(upper triangle\)"),
    (lambda n: torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1), r"the diagonal is False"),
    (lambda n: torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1), r"True and False are swapped"),
    (lambda n: torch.ones(n, n, dtype=torch.bool), r"every entry is True"),
    (lambda n: torch.tril(torch.ones(n, n)), r"right pattern as torch.float32; return a bool tensor"),
    (lambda n: torch.tril(torch.ones(n, n, dtype=torch.long)), r"right pattern as torch.int64"),
    (lambda n: torch.zeros(n, n).masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf")),
     r"additive float mask \(0 and -inf\)"),
    (lambda n: torch.tril(torch.ones(n + 1, n + 1, dtype=torch.bool)), r"expected \(4, 4\): one row per query"),
]


@pytest.mark.parametrize("check", MASK_CHECKS)
@pytest.mark.parametrize("mistake, hint", MASK_MISTAKES)
def test_mask_checks_name_the_mistake(check, mistake, hint):
    if check is ex.check_causal_mask_thorough:
        hint = hint.replace(r"\(4, 4\)", r"\(7, 7\)")
    with pytest.raises(AssertionError, match=hint):
        check(mistake)


def test_hidden_mask_check_catches_a_mask_right_only_for_small_n():
    def only_small(n):
        return mask_ok(n) if n <= 4 else torch.ones(n, n, dtype=torch.bool)

    ex.check_causal_mask_small(only_small)
    with pytest.raises(AssertionError, match=r"every entry is True"):
        ex.check_causal_mask_thorough(only_small)


def _unscaled(q, k, v, K_cache, V_cache):
    K, V = torch.cat([K_cache, k], 1), torch.cat([V_cache, v], 1)
    return torch.softmax(q @ K.transpose(1, 2), -1) @ V, K, V


def _divided_by_d(q, k, v, K_cache, V_cache):
    K, V = torch.cat([K_cache, k], 1), torch.cat([V_cache, v], 1)
    return torch.softmax(q @ K.transpose(1, 2) / q.shape[-1], -1) @ V, K, V


def _cache_only(q, k, v, K_cache, V_cache):
    out = torch.softmax(q @ K_cache.transpose(1, 2) / math.sqrt(q.shape[-1]), -1) @ V_cache
    return out, torch.cat([K_cache, k], 1), torch.cat([V_cache, v], 1)


def _self_only(q, k, v, K_cache, V_cache):
    return v.clone(), torch.cat([K_cache, k], 1), torch.cat([V_cache, v], 1)


def _new_key_in_front(q, k, v, K_cache, V_cache):
    out, _, V = step_ok(q, k, v, K_cache, V_cache)
    return out, torch.cat([k, K_cache], 1), V


def _new_value_in_front(q, k, v, K_cache, V_cache):
    out, K, _ = step_ok(q, k, v, K_cache, V_cache)
    return out, K, torch.cat([v, V_cache], 1)


def _old_cache_returned(q, k, v, K_cache, V_cache):
    out, _, V = step_ok(q, k, v, K_cache, V_cache)
    return out, K_cache, V


def _softmax_over_batch(q, k, v, K_cache, V_cache):
    K, V = torch.cat([K_cache, k], 1), torch.cat([V_cache, v], 1)
    return torch.softmax(q @ K.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=0) @ V, K, V


def _only_output(q, k, v, K_cache, V_cache):
    return step_ok(q, k, v, K_cache, V_cache)[0]


STEP_MISTAKES = [
    (_unscaled, r"the scores are not scaled: divide q K\^T by sqrt\(d\)"),
    (_divided_by_d, r"divided by d; divide by sqrt\(d\)"),
    (_cache_only, r"attends only to the cache: append the new key and value first"),
    (_self_only, r"attends only to itself"),
    (_new_key_in_front, r"the new key is put in front of the cache"),
    (_new_value_in_front, r"the new value is put in front of the cache"),
    (_old_cache_returned, r"returned the old cache K"),
    (_softmax_over_batch, r"the softmax runs over the batch or the query axis"),
    (_only_output, r"should return a tuple \(output, K, V\)"),
]


@pytest.mark.parametrize("check", STEP_CHECKS)
@pytest.mark.parametrize("mistake, hint", STEP_MISTAKES)
def test_step_checks_name_the_mistake(check, mistake, hint):
    with pytest.raises(AssertionError, match=hint):
        check(mistake)


def test_hidden_step_check_catches_a_step_that_fails_on_an_empty_cache():
    def needs_a_cache(q, k, v, K_cache, V_cache):
        if K_cache.shape[1] == 0:
            raise IndexError("index 0 is out of bounds for dimension 1 with size 0")
        return step_ok(q, k, v, K_cache, V_cache)

    ex.check_cached_attention_step_small(needs_a_cache)
    with pytest.raises(AssertionError, match=r"raised IndexError"):
        ex.check_cached_attention_step_thorough(needs_a_cache)


def test_hidden_step_check_catches_a_cache_that_forgets_old_positions():
    def window_of_four(q, k, v, K_cache, V_cache):  # keeps the last 4 positions only
        return step_ok(q, k, v, K_cache[:, -3:], V_cache[:, -3:])

    ex.check_cached_attention_step_small(window_of_four)  # 3 cached positions: nothing forgotten yet
    with pytest.raises(AssertionError, match=r"cached_attention_step \(output\)` returned wrong values"):
        ex.check_cached_attention_step_thorough(window_of_four)


def test_step_check_rejects_a_change_to_its_input():
    def in_place(q, k, v, K_cache, V_cache):
        q.mul_(1.0)
        K_cache.add_(1.0)
        return step_ok(q, k, v, K_cache - 1.0, V_cache)

    with pytest.raises(AssertionError, match=r"changed its input `K_cache` in place"):
        ex.check_cached_attention_step_small(in_place)


# --- encoder-decoder attention -------------------------------------------------------------------

CROSS_CHECKS = [ex.check_cross_attention_small, ex.check_cross_attention_thorough]


def cross_ok(H, E, src_valid_len, W_q, W_k, W_v):
    Q, K, V = H @ W_q, E @ W_k, E @ W_v
    scores = Q @ K.transpose(1, 2) / math.sqrt(W_q.shape[1])  # (b, m, n)
    padded = torch.arange(E.shape[1])[None, None, :] >= src_valid_len[:, None, None]
    weights = torch.softmax(scores.masked_fill(padded, float("-inf")), dim=-1)
    return weights @ V, weights


def cross_with_masked_softmax(H, E, src_valid_len, W_q, W_k, W_v):
    from companion.attention import masked_softmax

    scores = torch.bmm(H @ W_q, (E @ W_k).transpose(1, 2)) * W_q.shape[1] ** -0.5
    weights = masked_softmax(scores, src_valid_len)
    return torch.bmm(weights, E @ W_v), weights


def cross_by_loop(H, E, src_valid_len, W_q, W_k, W_v):
    outputs, all_weights = [], []
    for b in range(H.shape[0]):
        n = int(src_valid_len[b])
        K, V = E[b, :n] @ W_k, E[b, :n] @ W_v  # only the real source positions
        w = torch.softmax((H[b] @ W_q) @ K.T / math.sqrt(W_q.shape[1]), dim=-1)  # (m, n_b)
        full = torch.zeros(H.shape[1], E.shape[1], dtype=H.dtype)
        full[:, :n] = w
        outputs.append(w @ V)
        all_weights.append(full)
    return torch.stack(outputs), torch.stack(all_weights)


@pytest.mark.parametrize("check", CROSS_CHECKS)
@pytest.mark.parametrize("solution", [cross_ok, cross_with_masked_softmax, cross_by_loop])
def test_cross_checks_accept_correct_answers(check, solution):
    check(solution)


def _cross_variant(*, q_from="H", kv_from="E", mask="padding", scale="d_h", dim=-1, weigh="V", returns="both"):
    """A version of cross_ok with one thing changed, as the usual mistakes do."""

    def fn(H, E, src_valid_len, W_q, W_k, W_v):
        src = {"H": H, "E": E}
        Q, K = src[q_from] @ W_q, src[kv_from] @ W_k
        V = {"V": src[kv_from] @ W_v, "E": E, "K": K}[weigh]
        m, n = Q.shape[1], K.shape[1]
        s = {"d_h": math.sqrt(W_q.shape[1]), "none": 1.0, "d": math.sqrt(H.shape[-1]),
             "d_h squared": float(W_q.shape[1])}[scale]
        scores = Q @ K.transpose(1, 2) / s
        if mask in ("padding", "padding and causal"):
            scores = scores.masked_fill(torch.arange(n)[None, None, :] >= src_valid_len[:, None, None], -1e9)
        if mask == "padding and causal":
            scores = scores.masked_fill(torch.ones(m, n, dtype=torch.bool).triu(1), -1e9)
        weights = torch.softmax(scores, dim=dim)
        return {"both": (weights @ V, weights), "output": weights @ V, "swapped": (weights, weights @ V)}[returns]

    return fn


CROSS_MISTAKES = [
    (_cross_variant(kv_from="H", mask="none"), r"keys and values come from the decoder \(H\)"),
    (_cross_variant(q_from="E", kv_from="H", mask="none"), r"the queries come from the encoder \(E\)"),
    (_cross_variant(mask="none"), r"the padded source positions get weight"),
    (_cross_variant(mask="padding and causal"), r"a causal mask is applied: encoder-decoder attention needs none"),
    (_cross_variant(scale="none"), r"the scores are not scaled: divide by sqrt\(d_h\)"),
    (_cross_variant(scale="d"), r"divided by sqrt\(d\), the model width"),
    (_cross_variant(scale="d_h squared"), r"divided by d_h; divide by sqrt\(d_h\)"),
    (_cross_variant(dim=1), r"the softmax runs over the target positions \(dim=1\)"),
    (_cross_variant(weigh="E"), r"weighted sum of the unprojected encoder outputs E"),
    (_cross_variant(weigh="K"), r"weighted sum of the keys E @ W_k"),
    (_cross_variant(returns="output"), r"should return a tuple \(output, weights\)"),
    (_cross_variant(returns="swapped"), r"cross_attention \(weights\)` returned shape"),
]


@pytest.mark.parametrize("check", CROSS_CHECKS)
@pytest.mark.parametrize("mistake, hint", CROSS_MISTAKES)
def test_cross_checks_name_the_mistake(check, mistake, hint):
    with pytest.raises(AssertionError, match=hint):
        check(mistake)


def test_hidden_cross_check_catches_an_answer_that_assumes_square_weights():
    def square_only(H, E, src_valid_len, W_q, W_k, W_v):  # masks with a square (m, m) pattern of lengths
        out, w = cross_ok(H, E, src_valid_len, W_q, W_k, W_v)
        if H.shape[1] == E.shape[1]:
            return _cross_variant(mask="none")(H, E, src_valid_len, W_q, W_k, W_v)
        return out, w

    ex.check_cross_attention_small(square_only)
    with pytest.raises(AssertionError, match=r"the padded source positions get weight"):
        ex.check_cross_attention_thorough(square_only)


def test_hidden_cross_check_reproduces_one_head_of_multihead_attention():
    def transposed_weights(H, E, src_valid_len, W_q, W_k, W_v):  # treats W as (out, in), as nn.Linear stores it
        if W_q.shape[0] == W_q.shape[1] and W_v.shape[0] == W_v.shape[1]:
            return cross_ok(H, E, src_valid_len, W_q.T, W_k.T, W_v.T)
        return cross_ok(H, E, src_valid_len, W_q, W_k, W_v)

    ex.check_cross_attention_small(transposed_weights)  # d != d_h there: the shapes force the right use
    with pytest.raises(AssertionError, match=r"cross_attention \(weights\)` returned wrong values"):
        ex.check_cross_attention_thorough(transposed_weights)


def test_cross_check_names_a_softmax_over_the_targets_with_minus_infinity():
    def over_targets(H, E, src_valid_len, W_q, W_k, W_v):  # padded columns become NaN: -inf in every row
        Q, K, V = H @ W_q, E @ W_k, E @ W_v
        padded = torch.arange(E.shape[1])[None, None, :] >= src_valid_len[:, None, None]
        scores = (Q @ K.transpose(1, 2) / math.sqrt(W_q.shape[1])).masked_fill(padded, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return weights @ V, weights

    for check in CROSS_CHECKS:
        with pytest.raises(AssertionError, match=r"the softmax runs over the target positions \(dim=1\)"):
            check(over_targets)
