"""The exercise checks of chapter 4 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import companion.attention as att
from companion.exercises import attention_scoring as ex

MS_CHECKS = [ex.check_masked_softmax_small, ex.check_masked_softmax_thorough]
AS_CHECKS = [ex.check_additive_scores_small, ex.check_additive_scores_thorough]
SDP_CHECKS = [ex.check_scaled_dot_product_small, ex.check_scaled_dot_product_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def _mask(X, valid_lens, le=False):
    lens = valid_lens[:, None] if valid_lens.dim() == 1 else valid_lens  # (b, 1) or (b, n_q)
    pos = torch.arange(X.shape[-1])
    return (pos <= lens[..., None]) if le else (pos < lens[..., None])  # (b, 1 or n_q, n_k)


def ms_ok(X, valid_lens):
    mask = _mask(X, valid_lens)
    return torch.softmax(X.masked_fill(~mask, torch.finfo(X.dtype).min), dim=-1) * mask


def ms_ok_where(X, valid_lens):
    # Another right answer: -1e9 fill, then zero the rows that see no key.
    mask = _mask(X, valid_lens)
    weights = torch.softmax(X.masked_fill(~mask, -1e9), dim=-1)
    return torch.where(mask.any(-1, keepdim=True), weights, torch.zeros_like(weights))


def as_ok(queries, keys, W_q, W_k, w_v):
    q, k = queries @ W_q.T, keys @ W_k.T  # (b, n_q, h), (b, n_k, h)
    features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))  # (b, n_q, n_k, h)
    return features @ w_v  # (b, n_q, n_k)


def as_ok_einsum(queries, keys, W_q, W_k, w_v):
    q = torch.einsum("bqi,hi->bqh", queries, W_q)
    k = torch.einsum("bki,hi->bkh", keys, W_k)
    return torch.einsum("bqkh,h->bqk", torch.tanh(q[:, :, None] + k[:, None]), w_v)


def sdp_ok(queries, keys, values, valid_lens=None):
    d = queries.shape[-1]
    scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)  # (b, n_q, n_k)
    return torch.bmm(att.masked_softmax(scores, valid_lens), values)  # (b, n_q, v)


@pytest.mark.parametrize("check", MS_CHECKS)
def test_masked_softmax_checks_accept_reference(check):
    check(ms_ok)
    check(ms_ok_where)
    check(att.masked_softmax)


@pytest.mark.parametrize("check", AS_CHECKS)
def test_additive_checks_accept_reference(check):
    check(as_ok)
    check(as_ok_einsum)
    check(ex.reference_additive_scores)


@pytest.mark.parametrize("check", SDP_CHECKS)
def test_sdp_checks_accept_reference(check):
    check(sdp_ok)
    check(lambda q, k, v, valid_lens=None: att.DotProductAttention(0.0)(q, k, v, valid_lens))
    check(lambda q, k, v, valid_lens=None: att.fused_dot_product_attention(q, k, v, valid_lens))


# --- diagnosed mistakes: masked softmax ------------------------------------------------------------


def ms_fill(value, multiply=False, dim=-1, le=False):
    def fn(X, valid_lens):
        mask = _mask(X, valid_lens, le=le)
        weights = torch.softmax(X.masked_fill(~mask, value), dim=dim)
        return weights * mask if multiply else weights

    return fn


MS_MISTAKES = {
    "d2l fill, uniform empty rows": (ms_fill(-1e6), r"valid length 0 got uniform weights"),
    "no mask": (lambda X, lens: torch.softmax(X, dim=-1), r"nothing is masked"),
    "zeroed after softmax only": (lambda X, lens: torch.softmax(X, -1) * _mask(X, lens), r"do not sum to one"),
    "zero fill": (ms_fill(0.0), r"set to 0, which still gives them weight"),
    "softmax over queries": (ms_fill(-1e6, multiply=True, dim=1), r"over the queries \(dim=1\)"),
    "off by one": (ms_fill(-1e6, multiply=True, le=True), r"off by one"),
    "-inf fill": (ms_fill(float("-inf")), r"returned NaN for a query with valid length 0"),
}


@pytest.mark.parametrize("check", MS_CHECKS)
@pytest.mark.parametrize("mistake", sorted(MS_MISTAKES))
def test_masked_softmax_checks_name_the_mistake(check, mistake):
    wrong, hint = MS_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_masked_softmax_hidden_check_catches_nan_gradients():
    # -inf added through log(mask), NaNs replaced afterwards: forward right, backward NaN (the gradient reaches X
    # through the addition). Only the hidden check differentiates.
    def patched(X, valid_lens):
        mask = _mask(X, valid_lens)
        weights = torch.softmax(X + torch.log(mask.to(X.dtype)), dim=-1)
        return torch.nan_to_num(weights, nan=0.0)

    ex.check_masked_softmax_small(patched)
    with pytest.raises(AssertionError, match=r"NaN gradients for a query with valid length 0"):
        ex.check_masked_softmax_thorough(patched)


def test_masked_softmax_hidden_check_catches_ignoring_per_query_lengths():
    def first_query_only(X, valid_lens):
        lens = valid_lens if valid_lens.dim() == 1 else valid_lens[:, 0]
        return ms_ok(X, lens)

    with pytest.raises(AssertionError, match=r"wrong values"):
        ex.check_masked_softmax_thorough(first_query_only)


def test_masked_softmax_check_rejects_in_place_change():
    def in_place(X, valid_lens):
        mask = _mask(X, valid_lens).expand(X.shape)
        X[~mask] = torch.finfo(X.dtype).min
        return torch.softmax(X, dim=-1) * mask

    with pytest.raises(AssertionError, match="in place"):
        ex.check_masked_softmax_small(in_place)


def test_masked_softmax_hidden_check_catches_detached_weights():
    with pytest.raises(AssertionError, match=r"breaks autograd: the weights must depend on X"):
        ex.check_masked_softmax_thorough(lambda X, lens: ms_ok(X.detach(), lens))


# --- diagnosed mistakes: additive scores -------------------------------------------------------------


def as_variant(kind):
    def fn(queries, keys, W_q, W_k, w_v):
        q, k = queries @ W_q.T, keys @ W_k.T
        summed = q.unsqueeze(2) + k.unsqueeze(1)
        if kind == "no tanh":
            return summed @ w_v
        if kind == "tanh after":
            return torch.tanh(summed @ w_v)
        if kind == "bilinear":
            return q @ k.transpose(1, 2)
        if kind == "summed":
            return torch.tanh(summed).sum(-1)
        if kind == "weights":
            return torch.softmax(torch.tanh(summed) @ w_v, dim=-1)
        if kind == "transposed":
            return torch.tanh(q.unsqueeze(1) + k.unsqueeze(2)) @ w_v
        raise AssertionError(kind)

    return fn


AS_MISTAKES = {
    "no tanh": r"there is no tanh",
    "tanh after": r"tanh is applied after w_v",
    "bilinear": r"\(W_q q\) \. \(W_k k\), a bilinear score",
    "summed": r"summed the hidden features instead of projecting them with w_v",
    "weights": r"returned the attention weights",
    "transposed": r"transposed, \(batch, n_k, n_q\)",
}


@pytest.mark.parametrize("check", AS_CHECKS)
@pytest.mark.parametrize("mistake", sorted(AS_MISTAKES))
def test_additive_checks_name_the_mistake(check, mistake):
    with pytest.raises(AssertionError, match=AS_MISTAKES[mistake]):
        check(as_variant(mistake))


def test_additive_hidden_check_catches_square_only_mistakes():
    def untransposed(queries, keys, W_q, W_k, w_v):
        return as_ok(queries, keys, W_q.T, W_k, w_v)  # queries @ W_q: a shape error unless W_q is square

    with pytest.raises(AssertionError, match=r"queries @ W_q.T is"):
        ex.check_additive_scores_small(untransposed)
    with pytest.raises(AssertionError, match=r"(W_q is used untransposed|queries @ W_q.T is)"):
        ex.check_additive_scores_thorough(untransposed)

    def keys_with_w_q(queries, keys, W_q, W_k, w_v):
        return as_ok(queries, keys, W_q, W_q, w_v)

    with pytest.raises(AssertionError, match=r"(projected with W_q|queries @ W_q.T is|W_k)"):
        ex.check_additive_scores_thorough(keys_with_w_q)


def test_additive_mistake_table_names_untransposed_and_swapped_weights_on_square_cases():
    gen = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 5, 4, generator=gen)
    W_q, W_k, w_v = torch.randn(4, 4, generator=gen), torch.randn(4, 4, generator=gen), torch.randn(4, generator=gen)
    for fn, hint in [
        (lambda *a: as_ok(queries, keys, W_q.T, W_k, w_v), r"W_q is used untransposed"),
        (lambda *a: as_ok(queries, keys, W_q, W_k.T, w_v), r"W_k is used untransposed"),
        (lambda *a: as_ok(queries, keys, W_q, W_q, w_v), r"keys were projected with W_q"),
        (lambda *a: as_ok(queries, keys, W_k, W_q, w_v), r"W_q and W_k are swapped"),
    ]:
        with pytest.raises(AssertionError, match=hint):
            ex._expect_as(fn, queries, keys, W_q, W_k, w_v, seconds=5.0)


def test_additive_hidden_check_catches_broken_autograd():
    def numpy_detour(queries, keys, W_q, W_k, w_v):
        return torch.from_numpy(as_ok(queries, keys, W_q, W_k, w_v).detach().numpy())

    ex.check_additive_scores_small(numpy_detour)
    with pytest.raises(AssertionError, match=r"breaks autograd"):
        ex.check_additive_scores_thorough(numpy_detour)


# --- diagnosed mistakes: scaled dot-product ----------------------------------------------------------


def sdp_variant(kind):
    def fn(queries, keys, values, valid_lens=None):
        d, n_k = queries.shape[-1], keys.shape[1]
        raw = queries @ keys.transpose(1, 2)
        scale = {"unscaled": 1.0, "by d": d, "times sqrt d": 1 / math.sqrt(d), "by sqrt n_k": math.sqrt(n_k)}
        if kind in scale:
            return att.masked_softmax(raw / scale[kind], valid_lens) @ values
        if kind == "over queries":
            return torch.softmax(raw / math.sqrt(d), dim=1) @ values
        if kind == "weights":
            return att.masked_softmax(raw / math.sqrt(d), valid_lens)
        if kind == "mask ignored":
            return torch.softmax(raw / math.sqrt(d), dim=-1) @ values
        if kind == "d2l fill":
            if valid_lens is None:
                return sdp_ok(queries, keys, values)
            mask = att.valid_lens_to_mask(valid_lens, queries.shape[1], n_k)
            return torch.softmax((raw / math.sqrt(d)).masked_fill(~mask, -1e6), dim=-1) @ values
        if kind == "-inf fill":
            if valid_lens is None:
                return sdp_ok(queries, keys, values)
            mask = att.valid_lens_to_mask(valid_lens, queries.shape[1], n_k)
            return torch.softmax((raw / math.sqrt(d)).masked_fill(~mask, float("-inf")), dim=-1) @ values
        raise AssertionError(kind)

    return fn


SDP_MISTAKES = {
    "unscaled": r"not scaled: divide q \. k by sqrt\(d\)",
    "by d": r"divided by d; divide by sqrt\(d\)",
    "times sqrt d": r"multiplied by sqrt\(d\)",
    "by sqrt n_k": r"divided by sqrt\(n_k\), the number of keys",
    "over queries": r"over the queries \(dim=1\)",
    "weights": r"returned the attention weights",
    "mask ignored": r"valid_lens is ignored",
}


@pytest.mark.parametrize("check", SDP_CHECKS)
@pytest.mark.parametrize("mistake", sorted(SDP_MISTAKES))
def test_sdp_checks_name_the_mistake(check, mistake):
    with pytest.raises(AssertionError, match=SDP_MISTAKES[mistake]):
        check(sdp_variant(mistake))


def test_sdp_hidden_check_catches_empty_query_mistakes():
    # Right wherever every query sees a key (the public check), wrong for a valid length 0.
    for kind, hint in [("d2l fill", r"got the mean of the values: it must get the zero vector"),
                       ("-inf fill", r"returned NaN: a query with valid length 0")]:
        ex.check_scaled_dot_product_small(sdp_variant(kind))
        with pytest.raises(AssertionError, match=hint):
            ex.check_scaled_dot_product_thorough(sdp_variant(kind))


def test_sdp_check_uses_the_right_reference():
    # The reference the checks use is PyTorch's fused attention (dropout off).
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(ex._sdp(q, k, v, None), F.scaled_dot_product_attention(q, k, v))
