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
