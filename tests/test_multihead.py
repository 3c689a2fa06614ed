"""Multi-head attention: head split and merge, shapes, masks, parity with torch (chapter 6)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from companion.attention import DotProductAttention
from companion.multihead import (
    KVCache,
    MultiHeadAttention,
    load_torch_mha_weights,
    transpose_output,
    transpose_qkv,
    valid_lens_to_key_padding_mask,
)
from companion.transformer_seq2seq import causal_mask
from conftest import D, gen, rand


rand = functools.partial(rand, dtype=torch.float32)  # the module's own tensors are float32


# --------------------------------------------------------------------------- split and merge


def test_transpose_qkv_shape_and_layout():
    X = rand(2, 5, 12)
    Y = transpose_qkv(X, 3)
    assert Y.shape == (6, 5, 4)
    # Row b * heads + h holds features h*d_h:(h+1)*d_h of sequence b, at every position.
    for b in range(2):
        for h in range(3):
            assert torch.equal(Y[b * 3 + h], X[b, :, h * 4:(h + 1) * 4])


def test_transpose_output_inverts_transpose_qkv():
    X = rand(3, 7, 16, seed=1)
    for heads in (1, 2, 4, 8, 16):
        assert torch.equal(transpose_output(transpose_qkv(X, heads), heads), X)


def test_transpose_qkv_inverts_transpose_output():
    Y = rand(8, 5, 3, seed=2)  # batch 2, 4 heads of size 3
    assert torch.equal(transpose_qkv(transpose_output(Y, 4), 4), Y)


def test_one_head_split_is_identity():
    X = rand(2, 5, 6)
    assert torch.equal(transpose_qkv(X, 1), X)


def test_split_rejects_indivisible_width():
    with pytest.raises(ValueError, match=r"num_hiddens=10.*num_heads=3"):
        transpose_qkv(rand(2, 5, 10), 3)


def test_split_and_merge_reject_bad_input():
    with pytest.raises(ValueError, match="3-D"):
        transpose_qkv(rand(5, 12), 3)
    with pytest.raises(ValueError, match="divisible by num_heads=4"):
        transpose_output(rand(6, 5, 3), 4)
    with pytest.raises(ValueError, match="positive int"):
        transpose_qkv(rand(2, 5, 12), 0)


# --------------------------------------------------------------------------- the module


def test_mha_rejects_indivisible_width_naming_both_numbers():
    with pytest.raises(ValueError, match=r"num_hiddens=100 and num_heads=3"):
        MultiHeadAttention(100, 3, 0.0)


def test_mha_output_and_weight_shapes():
    mha = MultiHeadAttention(8, 2, 0.0, query_size=5, key_size=6, value_size=7)
    out = mha(rand(3, 4, 5), rand(3, 9, 6), rand(3, 9, 7))
    assert out.shape == (3, 4, 8)
    assert mha.attention_weights.shape == (3, 2, 4, 9)
    torch.testing.assert_close(mha.attention_weights.sum(-1), torch.ones(3, 2, 4))


def test_mha_lazy_layers_infer_sizes():
    mha = MultiHeadAttention(8, 4, 0.0)
    out = mha(rand(2, 3, 5), rand(2, 6, 7), rand(2, 6, 9))
    assert out.shape == (2, 3, 8)
    assert mha.W_q.weight.shape == (8, 5) and mha.W_v.weight.shape == (8, 9)


def test_mha_checks_feature_sizes():
    mha = MultiHeadAttention(8, 2, 0.0, query_size=5, key_size=5, value_size=5)
    with pytest.raises(ValueError, match="keys must have 5 features"):
        mha(rand(1, 2, 5), rand(1, 3, 4), rand(1, 3, 5))
    with pytest.raises(ValueError, match="batch size 2"):
        mha(rand(2, 2, 5), rand(2, 3, 5), rand(2, 3, 5), torch.tensor([1, 2, 3]))


def test_parameter_count_does_not_depend_on_heads():
    counts = {
        h: sum(p.numel() for p in MultiHeadAttention(24, h, 0.0, bias=True, query_size=24,
                                                      key_size=24, value_size=24).parameters())
        for h in (1, 2, 3, 4, 6, 8)
    }
    assert set(counts.values()) == {4 * 24 * 24 + 4 * 24}


def _heads_by_hand(mha: MultiHeadAttention, q, k, v, valid_lens=None):
    """Multi-head attention written as a loop over heads and sequences, the definition."""
    h, d = mha.num_heads, mha.num_hiddens // mha.num_heads
    Q, K, V = mha.W_q(q), mha.W_k(k), mha.W_v(v)
    outs = []
    for b in range(q.shape[0]):
        heads = []
        for i in range(h):
            sl = slice(i * d, (i + 1) * d)
            n = K.shape[1] if valid_lens is None else int(valid_lens[b])
            scores = Q[b, :, sl] @ K[b, :n, sl].T / d ** 0.5  # (n_q, n)
            heads.append(torch.softmax(scores, -1) @ V[b, :n, sl])  # (n_q, d)
        outs.append(torch.cat(heads, -1))
    return mha.W_o(torch.stack(outs))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_mha_equals_loop_over_heads(heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, heads, 0.0, bias=True, query_size=3, key_size=5, value_size=6)
    q, k, v = rand(2, 4, 3, seed=1), rand(2, 6, 5, seed=2), rand(2, 6, 6, seed=3)
    lens = torch.tensor([6, 2])
    torch.testing.assert_close(mha(q, k, v), _heads_by_hand(mha, q, k, v))
    torch.testing.assert_close(mha(q, k, v, lens), _heads_by_hand(mha, q, k, v, lens))


def test_one_head_equals_dot_product_attention_after_projections():
    torch.manual_seed(0)
    mha = MultiHeadAttention(6, 1, 0.0, query_size=4, key_size=4, value_size=4)
    q, k, v = rand(2, 3, 4, seed=1), rand(2, 5, 4, seed=2), rand(2, 5, 4, seed=3)
    lens = torch.tensor([3, 5])
    att = DotProductAttention(0.0)
    expected = mha.W_o(att(mha.W_q(q), mha.W_k(k), mha.W_v(v), lens))
    torch.testing.assert_close(mha(q, k, v, lens), expected)
    torch.testing.assert_close(mha.attention_weights[:, 0], att.attention_weights)


def test_masked_keys_get_zero_weight_in_every_head():
    mha = MultiHeadAttention(8, 4, 0.0)
    q, k = rand(2, 3, 8), rand(2, 5, 8, seed=1)
    mha(q, k, k, torch.tensor([2, 4]))
    w = mha.attention_weights  # (2, 4, 3, 5)
    assert (w[0, :, :, 2:] == 0).all() and (w[1, :, :, 4:] == 0).all()
    assert (w[0, :, :, :2] > 0).all() and (w[1, :, :, :4] > 0).all()


def test_padding_does_not_change_the_output():
    """Whatever sits in the masked positions, the output is the same."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, 0.0)
    q, k = rand(2, 3, 8), rand(2, 5, 8, seed=1)
    lens = torch.tensor([2, 4])
    out = mha(q, k, k, lens)
    k2 = k.clone()
    k2[0, 2:] = 100.0
    k2[1, 4:] = -50.0
    torch.testing.assert_close(mha(q, k2, k2, lens), out)


def test_per_query_lengths_and_bool_masks_are_repeated_per_head():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 4, 0.0)
    X = rand(2, 4, 8)
    causal_lens = torch.arange(1, 5).expand(2, 4)  # (batch, n_q): query i sees keys 0..i
    out_lens = mha(X, X, X, causal_lens)
    w = mha.attention_weights
    assert torch.equal(w.triu(1), torch.zeros_like(w))
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    torch.testing.assert_close(mha(X, X, X, causal[None]), out_lens)  # (1, n_q, n_k) shared
    torch.testing.assert_close(mha(X, X, X, causal.expand(2, 4, 4)), out_lens)  # per sequence


def test_dropout_acts_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, 0.5, query_size=8, key_size=8, value_size=8)
    X = rand(2, 5, 8)
    mha.eval()
    assert torch.equal(mha(X, X, X), mha(X, X, X))
    mha.train()
    assert not torch.equal(mha(X, X, X), mha(X, X, X))


# --------------------------------------------------------------------------- parity with torch


def test_key_padding_mask_marks_padding_true():
    mask = valid_lens_to_key_padding_mask(torch.tensor([1, 3, 0]), 3)
    assert mask.tolist() == [[False, True, True], [False, False, False], [True, True, True]]
    with pytest.raises(ValueError, match="1-D integer"):
        valid_lens_to_key_padding_mask(torch.tensor([1.0, 2.0]), 3)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("lazy", [False, True])
def test_mha_equals_torch_multihead_attention(bias, masked, lazy):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, bias=bias, batch_first=True).eval()
    if bias:  # torch initialises its biases to zero; make them count
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    sizes = {} if lazy else dict(query_size=16, key_size=16, value_size=16)
    mha = load_torch_mha_weights(MultiHeadAttention(16, 4, 0.0, bias=bias, **sizes), ref).eval()
    q, k, v = rand(3, 5, 16, seed=1), rand(3, 7, 16, seed=2), rand(3, 7, 16, seed=3)
    lens = torch.tensor([2, 7, 4]) if masked else None
    kpm = valid_lens_to_key_padding_mask(lens, 7) if masked else None
    expected, weights = ref(q, k, v, key_padding_mask=kpm, average_attn_weights=False)
    torch.testing.assert_close(mha(q, k, v, lens), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mha.attention_weights, weights, atol=1e-5, rtol=1e-5)
    # The fused path (need_weights=False) agrees too.
    fused, _ = ref(q, k, v, key_padding_mask=kpm, need_weights=False)
    torch.testing.assert_close(mha(q, k, v, lens), fused, atol=1e-5, rtol=1e-5)


def test_mha_equals_torch_with_different_key_and_value_sizes():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, batch_first=True).eval()
    mha = load_torch_mha_weights(
        MultiHeadAttention(8, 2, 0.0, bias=True, query_size=8, key_size=5, value_size=3), ref)
    q, k, v = rand(2, 4, 8, seed=1), rand(2, 6, 5, seed=2), rand(2, 6, 3, seed=3)
    expected, _ = ref(q, k, v)
    torch.testing.assert_close(mha(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_load_torch_weights_rejects_mismatch():
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with pytest.raises(ValueError, match="num_heads=2"):
        load_torch_mha_weights(MultiHeadAttention(16, 2, 0.0, bias=True), ref)
    with pytest.raises(ValueError, match="bias settings differ"):
        load_torch_mha_weights(MultiHeadAttention(16, 4, 0.0, bias=False), ref)


def test_a_sequence_without_keys_gets_the_output_bias_like_torch_fused():
    # Our heads output zeros for a query that sees no key (chapter 4's rule), so the layer outputs W_o's bias;
    # PyTorch's fused path (need_weights=False) does the same.
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    mha = load_torch_mha_weights(MultiHeadAttention(8, 2, 0.0, bias=True), ref)
    q, k = rand(2, 3, 8), rand(2, 4, 8, seed=1)
    lens = torch.tensor([0, 3])
    out = mha(q, k, k, lens)
    torch.testing.assert_close(out[0], ref.out_proj.bias.detach().expand(3, 8))
    fused, _ = ref(q, k, k, key_padding_mask=valid_lens_to_key_padding_mask(lens, 4), need_weights=False)
    torch.testing.assert_close(out, fused, atol=1e-5, rtol=1e-5)
    assert (mha.attention_weights[0] == 0).all()


# --------------------------------------------------------------------------- one head vs many


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one thread
    yield
    torch.set_num_threads(threads)


def test_attention_with_a_cache_equals_attention_over_all_positions():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, 4, 0.0, bias=True, query_size=D, key_size=D, value_size=D).eval()
    X = torch.randn(2, 6, D, generator=gen(3))
    full = mha(X, X, X, causal_mask(6)[None])  # (2, 6, D)
    cache = KVCache()
    first = mha(X[:, :4], X[:, :4], X[:, :4], causal_mask(4)[None], cache=cache)  # four at once
    rest = [mha(X[:, t:t + 1], X[:, t:t + 1], X[:, t:t + 1], causal_mask(1, t + 1)[None], cache=cache)
            for t in (4, 5)]  # then one by one
    assert len(cache) == 6 and cache.k.shape == (2 * 4, 6, D // 4)
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-6, rtol=1e-5)
    assert mha.attention_weights.shape == (2, 4, 1, 6)


def test_a_full_cache_serves_keys_and_values_without_new_ones():
    # Encoder-decoder attention: the encoder's keys and values are projected once, then reused.
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, 2, 0.0, query_size=D, key_size=D, value_size=D).eval()
    memory, lens = torch.randn(3, 5, D, generator=gen(4)), torch.tensor([5, 2, 4])
    queries = torch.randn(3, 4, D, generator=gen(5))
    full = mha(queries, memory, memory, lens)
    cache = KVCache()
    first = mha(queries[:, :1], memory, memory, lens, cache=cache)
    rest = mha(queries[:, 1:], None, None, lens, cache=cache)
    assert len(cache) == 5
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-6, rtol=1e-5)


def test_kv_cache_rejects_mismatched_keys_and_an_empty_cache():
    cache = KVCache()
    with pytest.raises(ValueError, match=r"k and v must be 3-D of the same shape"):
        cache.append(torch.zeros(2, 1, 4), torch.zeros(2, 1, 3))
    cache.append(torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match=r"new keys must have shape \(2, n_new, 4\)"):
        cache.append(torch.zeros(3, 1, 4), torch.zeros(3, 1, 4))
    mha = MultiHeadAttention(D, 2, 0.0, query_size=D, key_size=D, value_size=D)
    with pytest.raises(ValueError, match=r"the cache is empty"):
        mha(torch.zeros(1, 1, D), None, None, cache=KVCache())
    with pytest.raises(ValueError, match=r"the cache is empty"):
        mha(torch.zeros(1, 1, D), None, None)
    with pytest.raises(ValueError, match=r"keys and values must both be tensors or both be None"):
        mha(torch.zeros(1, 1, D), torch.zeros(1, 1, D), None)
