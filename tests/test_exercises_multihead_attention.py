"""The exercise checks of chapter 6 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch

from companion.exercises import multihead_attention as ex
from companion.multihead import MultiHeadAttention, transpose_output, transpose_qkv

SPLIT_CHECKS = [ex.check_split_heads_small, ex.check_split_heads_thorough]
MERGE_CHECKS = [ex.check_merge_heads_small, ex.check_merge_heads_thorough]
COUNT_CHECKS = [ex.check_num_parameters_small, ex.check_num_parameters_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def split_ok(X, num_heads):
    b, n, d = X.shape
    X = X.reshape(b, n, num_heads, d // num_heads).permute(0, 2, 1, 3)  # (b, h, n, d_h)
    return X.reshape(b * num_heads, n, d // num_heads)


def split_ok_chunks(X, num_heads):
    # Another right answer: cut the features into chunks and interleave them per sequence.
    heads = torch.stack(X.chunk(num_heads, dim=-1), dim=1)  # (b, h, n, d_h)
    return heads.flatten(0, 1)


def merge_ok(Y, num_heads):
    bh, n, dh = Y.shape
    Y = Y.reshape(bh // num_heads, num_heads, n, dh).permute(0, 2, 1, 3)  # (b, n, h, d_h)
    return Y.reshape(bh // num_heads, n, num_heads * dh)


def merge_ok_cat(Y, num_heads):
    heads = Y.unflatten(0, (-1, num_heads))  # (b, h, n, d_h)
    return torch.cat(heads.unbind(1), dim=-1)


def count_ok(num_hiddens, num_heads, query_size, key_size, value_size, bias):
    weights = num_hiddens * (query_size + key_size + value_size) + num_hiddens * num_hiddens
    return weights + (4 * num_hiddens if bias else 0)


@pytest.mark.parametrize("check", SPLIT_CHECKS)
def test_split_checks_accept_reference(check):
    check(split_ok)
    check(split_ok_chunks)
    check(transpose_qkv)


@pytest.mark.parametrize("check", MERGE_CHECKS)
def test_merge_checks_accept_reference(check):
    check(merge_ok)
    check(merge_ok_cat)
    check(transpose_output)


@pytest.mark.parametrize("check", COUNT_CHECKS)
def test_count_checks_accept_reference(check):
    check(count_ok)
    check(ex.reference_num_parameters)
    check(lambda *args: float(count_ok(*args)))  # a whole float is fine
    check(lambda *args: torch.tensor(count_ok(*args)))


def test_reference_count_is_the_formula():
    for args in [(12, 3, 10, 8, 8, False), (12, 3, 10, 8, 8, True), (20, 5, 3, 4, 5, True)]:
        assert ex.reference_num_parameters(*args) == count_ok(*args)


# --- diagnosed mistakes: split -----------------------------------------------------------------------


def split_no_permute(X, h):
    b, n, d = X.shape
    return X.reshape(b * h, n, d // h)


def split_strided(X, h):
    b, n, d = X.shape
    return X.reshape(b, n, d // h, h).permute(0, 3, 1, 2).reshape(b * h, n, d // h)


def split_batch_heads_swapped(X, h):
    b, n, d = X.shape
    return X.reshape(b, n, h, d // h).permute(2, 0, 1, 3).reshape(b * h, n, d // h)


def split_positions_features_swapped(X, h):
    b, n, d = X.shape
    return X.reshape(b, n, h, d // h).permute(0, 2, 3, 1).reshape(b * h, d // h, n)


def split_not_folded(X, h):
    b, n, d = X.shape
    return X.reshape(b, n, h, d // h).permute(0, 2, 1, 3)


def split_not_permuted_4d(X, h):
    b, n, d = X.shape
    return X.reshape(b, n, h, d // h)


def split_view(X, h):
    b, n, d = X.shape
    return X.view(b, n, h, d // h).permute(0, 2, 1, 3).view(b * h, n, d // h)


def split_wrong_sizes(X, h):
    b, n, d = X.shape
    return X.reshape(b, n, h, d).permute(0, 2, 1, 3)


def split_in_place(X, h):
    X.mul_(1.0).add_(1.0)
    return split_ok(X, h)


@pytest.mark.parametrize("check", SPLIT_CHECKS)
@pytest.mark.parametrize(
    "fn, hint",
    [
        (split_no_permute, r"reshaped without permuting"),
        (split_strided, r"every h-th feature"),
        (split_batch_heads_swapped, r"batch and heads are swapped"),
        (split_positions_features_swapped, r"positions and per-head features are swapped"),
        (split_not_folded, r"not folded into the batch"),
        (split_not_permuted_4d, r"you returned \(b, n, h, d // h\)"),
        (split_wrong_sizes, r"must multiply to the number of elements"),
        (split_in_place, r"changed its input `X` in place"),
    ],
)
def test_split_checks_name_the_mistake(check, fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check(fn)


def test_split_view_error_is_explained_by_the_public_check():
    with pytest.raises(AssertionError, match=r"use \.reshape"):
        ex.check_split_heads_small(split_view)


def test_split_checks_accept_view_where_it_is_legal():
    # Splitting an axis with .view works even on a transposed input; only folding after permute needs reshape.
    def split_view_then_reshape(X, h):
        b, n, d = X.shape
        return X.view(b, n, h, d // h).permute(0, 2, 1, 3).reshape(b * h, n, d // h)

    for check in SPLIT_CHECKS:
        check(split_view_then_reshape)


def test_split_hidden_check_requires_autograd():
    with pytest.raises(AssertionError, match="breaks autograd"):
        ex.check_split_heads_thorough(lambda X, h: split_ok(X.detach(), h))


# --- diagnosed mistakes: merge -----------------------------------------------------------------------


def merge_no_permute(Y, h):
    bh, n, dh = Y.shape
    return Y.reshape(bh // h, n, h * dh)


def merge_interleaved(Y, h):
    bh, n, dh = Y.shape
    return Y.reshape(bh // h, h, n, dh).permute(0, 2, 3, 1).reshape(bh // h, n, dh * h)


def merge_batch_heads_swapped(Y, h):
    bh, n, dh = Y.shape
    return Y.reshape(h, bh // h, n, dh).permute(1, 2, 0, 3).reshape(bh // h, n, h * dh)


def merge_not_concatenated(Y, h):
    bh, n, dh = Y.shape
    return Y.reshape(bh // h, h, n, dh).permute(0, 2, 1, 3)


def merge_only_unfolded(Y, h):
    bh, n, dh = Y.shape
    return Y.reshape(bh // h, h, n, dh)


@pytest.mark.parametrize("check", MERGE_CHECKS)
@pytest.mark.parametrize(
    "fn, hint",
    [
        (merge_no_permute, r"reshaped without permuting"),
        (merge_interleaved, r"features are interleaved"),
        (merge_batch_heads_swapped, r"batch and heads are swapped"),
        (merge_not_concatenated, r"heads are not concatenated"),
        (merge_only_unfolded, r"only unfolded the heads"),
    ],
)
def test_merge_checks_name_the_mistake(check, fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check(fn)


def test_merge_view_error_is_explained():
    def merge_view(Y, h):
        bh, n, dh = Y.shape
        return Y.view(bh // h, h, n, dh).permute(0, 2, 1, 3).view(bh // h, n, h * dh)

    for check in MERGE_CHECKS:
        with pytest.raises(AssertionError, match=r"use \.reshape"):
            check(merge_view)


# --- diagnosed mistakes: parameter count -----------------------------------------------------------


def _count(no_wo=False, per_head_full=False, times_heads=False, one_head=False, all_hidden=False,
           no_bias=False, three_biases=False, bias_always=False):
    def fn(d, h, q, k, v, bias):
        if all_hidden:
            q = k = v = d
        proj = (d // h if one_head else d) * (q + k + v)
        if per_head_full:
            proj *= h
        out = 0 if no_wo else d * d
        n_bias = 0
        if (bias and not no_bias) or bias_always:
            n_bias = 3 if (no_wo or three_biases) else 4
            n_bias *= h if per_head_full else 1
        total = proj + out + n_bias * d
        return total * h if times_heads else total
    return fn


@pytest.mark.parametrize("check", COUNT_CHECKS)
@pytest.mark.parametrize(
    "fn, hint",
    [
        (_count(no_wo=True), r"W_o is missing"),
        (_count(per_head_full=True), r"every head was given full-size projections"),
        (_count(times_heads=True), r"whole count was multiplied by num_heads"),
        (_count(one_head=True), r"only one head's projections"),
        (_count(all_hidden=True), r"all three inputs were taken to have num_hiddens features"),
        (_count(no_bias=True), r"the biases are missing"),
        (_count(three_biases=True), r"only three biases"),
        (_count(bias_always=True), r"with bias=False no layer has a bias"),
    ],
)
def test_count_checks_name_the_mistake(check, fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check(fn)


@pytest.mark.parametrize("check", COUNT_CHECKS)
def test_count_checks_reject_non_integers(check):
    with pytest.raises(AssertionError, match="should return a whole number"):
        check(lambda *args: count_ok(*args) + 0.5)
    with pytest.raises(AssertionError, match="should return a whole number"):
        check(lambda *args: str(count_ok(*args)))


def test_count_check_reports_an_unknown_wrong_number():
    with pytest.raises(AssertionError, match=r"returned 7, expected 456"):
        ex.check_num_parameters_small(lambda *args: 7)


def test_count_checks_hold_for_every_head_count():
    # The property behind exercise 3: the count is the same for every divisor of num_hiddens.
    counts = {sum(p.numel() for p in MultiHeadAttention(12, h, 0.0, bias=True, query_size=5, key_size=6,
                                                         value_size=7).parameters()) for h in (1, 2, 3, 4, 6, 12)}
    assert counts == {count_ok(12, 1, 5, 6, 7, True)}
