"""Tests for companion.transformer_seq2seq: causal masks, the decoder and its KV cache (chapter 9)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.decoding import evaluate_seq2seq, transformer_greedy_decode
from companion.multihead import load_torch_mha_weights
from companion.positional import LearnedPositionalEmbedding, PositionalEncoding
from companion.tasks.synthetic import make_sequence_task
from companion.training import train_seq2seq
from companion.transformer_seq2seq import (
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoderDecoder,
    causal_mask,
)
from conftest import D, V_SRC, V_TGT, gen, transformer_net

pytestmark = pytest.mark.usefixtures("one_thread")


BOTH_NORMS_AND_POSITIONS = pytest.mark.parametrize(
    "norm_first, positions", [(False, "sinusoidal"), (True, "sinusoidal"), (True, "learned")])


# --- causal mask ---------------------------------------------------------------------------------------


def test_causal_mask_is_the_lower_triangle():
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(4), expected)
    assert causal_mask(1).tolist() == [[True]]


def test_causal_mask_with_cached_positions_shifts_right():
    # Two new queries after three cached positions: they sit at positions 3 and 4.
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5), expected)
    assert torch.equal(causal_mask(5, 5), causal_mask(5))
    assert torch.equal(causal_mask(3, 8), causal_mask(8)[-3:])


@pytest.mark.parametrize("args, message", [
    ((0,), r"n must be a positive int, got 0"),
    ((3, 2), r"n_k >= n, got n=3, n_k=2"),
    ((2.0,), r"n must be a positive int, got 2.0"),
])
def test_causal_mask_rejects_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        causal_mask(*args)


# --- the decoder ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_shapes_of_logits_and_attention_weights(transformer_batch, norm_first):
    X, lens, Y = transformer_batch
    net = transformer_net(norm_first)
    logits = net(X, Y, lens)
    assert logits.shape == (3, 6, V_TGT)
    for w in net.decoder.self_attention_weights:
        assert w.shape == (3, 2, 6, 6)
    for w in net.decoder.cross_attention_weights:
        assert w.shape == (3, 2, 6, 7)
    assert net.decoder.attention_weights.shape == (3, 6, 7)


@BOTH_NORMS_AND_POSITIONS
def test_output_at_position_t_ignores_later_target_tokens(transformer_batch, norm_first, positions):
    X, lens, Y = transformer_batch
    net = transformer_net(norm_first, positions=positions)
    logits = net(X, Y, lens)  # (3, 6, V)
    for t in range(Y.shape[1] - 1):
        Y2 = Y.clone()
        Y2[:, t + 1:] = torch.randint(3, V_TGT, Y2[:, t + 1:].shape, generator=gen(t))  # new future
        Y2[:, t + 1] = (Y[:, t + 1] + 1 - 3) % (V_TGT - 3) + 3  # certainly different at t + 1
        logits2 = net(X, Y2, lens)
        torch.testing.assert_close(logits2[:, : t + 1], logits[:, : t + 1], atol=1e-6, rtol=1e-5)
        # ... and the future does change the later positions (the test is not vacuous).
        assert (logits2[:, t + 1] - logits[:, t + 1]).abs().max() > 1e-4


@BOTH_NORMS_AND_POSITIONS
def test_output_at_position_t_changes_when_an_earlier_target_token_changes(transformer_batch, norm_first, positions):
    X, lens, Y = transformer_batch
    net = transformer_net(norm_first, positions=positions)
    logits = net(X, Y, lens)  # (3, 6, V)
    for s in range(Y.shape[1] - 1):
        Y2 = Y.clone()
        Y2[:, s] = (Y[:, s] + 1 - 3) % (V_TGT - 3) + 3  # a different token at position s only
        moved = (net(X, Y2, lens) - logits).abs().amax(dim=-1)  # (3, 6): largest change per position
        assert torch.equal(moved[:, :s], torch.zeros(3, s))  # before s: nothing
        assert (moved[:, s:] > 1e-4).all(), (s, moved)  # at s and every position after it: a change


def test_self_attention_weights_are_zero_above_the_diagonal(transformer_batch):
    X, lens, Y = transformer_batch
    net = transformer_net()
    net(X, Y, lens)
    for w in net.decoder.self_attention_weights:  # (3, 2, 6, 6)
        above = ~causal_mask(6)
        assert torch.equal(w[..., above], torch.zeros_like(w[..., above]))
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(3, 2, 6))
        assert (w[..., causal_mask(6)] > 0).all()


def test_encoder_decoder_attention_ignores_source_padding(transformer_batch):
    X, lens, Y = transformer_batch
    net = transformer_net()
    logits = net(X, Y, lens)
    X2 = X.clone()
    X2[torch.arange(7)[None, :] >= lens[:, None]] = 5  # other tokens in the padding
    torch.testing.assert_close(net(X2, Y, lens), logits)
    for w in net.decoder.cross_attention_weights:  # (3, 2, 6, 7)
        padding = (torch.arange(7)[None, :] >= lens[:, None])[:, None, None, :].expand_as(w)
        assert torch.equal(w[padding], torch.zeros_like(w[padding]))
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(3, 2, 6))


def test_queries_come_from_the_decoder_keys_and_values_from_the_encoder(transformer_batch):
    X, lens, Y = transformer_batch
    net = transformer_net(num_blks=1)
    block = net.decoder.blks[0]
    seen = {}
    block.attention2.register_forward_hook(lambda m, args, out: seen.update(args=args))
    enc_outputs = net.encoder(X, lens)
    net.decoder(Y, net.decoder.init_state(enc_outputs, lens, use_cache=False))
    queries, keys, values, valid = seen["args"]
    assert queries.shape == (3, 6, D)  # one query per target position
    assert keys is enc_outputs and values is enc_outputs
    assert torch.equal(valid, lens)


def test_decoder_block_equals_torch_transformer_decoder_layer():
    torch.manual_seed(0)
    for norm_first in (False, True):
        layer = nn.TransformerDecoderLayer(D, 2, 24, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
        block = TransformerDecoderBlock(D, 24, 2, 0.0, use_bias=True, norm_first=norm_first).eval()
        with torch.no_grad():
            load_torch_mha_weights(block.attention1, layer.self_attn)
            load_torch_mha_weights(block.attention2, layer.multihead_attn)
            for ours, theirs in ((block.ffn.dense1, layer.linear1), (block.ffn.dense2, layer.linear2),
                                 (block.addnorm1.ln, layer.norm1), (block.addnorm2.ln, layer.norm2),
                                 (block.addnorm3.ln, layer.norm3)):
                ours.weight.copy_(theirs.weight)
                ours.bias.copy_(theirs.bias)
        X, memory = torch.randn(3, 5, D, generator=gen(1)), torch.randn(3, 7, D, generator=gen(2))
        lens = torch.tensor([7, 3, 5])
        padding = torch.arange(7)[None, :] >= lens[:, None]  # torch: True = ignore
        expected = layer(X, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
                         memory_key_padding_mask=padding, tgt_is_causal=True)
        torch.testing.assert_close(block(X, memory, lens), expected, atol=1e-5, rtol=1e-5)


def test_decoder_rejects_bad_inputs(transformer_batch):
    X, lens, Y = transformer_batch
    net = transformer_net()
    enc = net.encoder(X, lens)
    with pytest.raises(ValueError, match=r"X must be a 2-D tensor of token ids"):
        net.decoder(Y.float(), net.decoder.init_state(enc, lens))
    with pytest.raises(ValueError, match=r"same batch size, got X \(2, 6\)"):
        net.decoder(Y[:2], net.decoder.init_state(enc, lens))
    with pytest.raises(ValueError, match=r"enc_outputs must be \(B, T_src, 16\), got torch.Size\(\[3, 7, 8\]\)"):
        net.decoder.init_state(enc[..., :8], lens)
    with pytest.raises(ValueError, match=r"num_blks must be a positive int, got 0"):
        TransformerDecoder(V_TGT, D, 24, 2, 0, 0.0)


# --- the KV cache ---------------------------------------------------------------------------------------


@BOTH_NORMS_AND_POSITIONS
def test_decoding_one_token_at_a_time_with_the_cache_equals_one_pass(transformer_batch, norm_first, positions):
    X, lens, Y = transformer_batch
    net = transformer_net(norm_first, positions=positions)
    expected = net(X, Y, lens)  # (3, 6, V): teacher forcing, one pass
    state = net.decoder.init_state(net.encoder(X, lens), lens)  # caches on
    steps, weights = [], []
    for t in range(Y.shape[1]):
        logits, state = net.decoder(Y[:, t:t + 1], state)  # (3, 1, V)
        steps.append(logits)
        weights.append(net.decoder.attention_weights)
        assert state.offset == t + 1 and len(state.caches[0][0]) == t + 1 and len(state.caches[0][1]) == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=1e-5)
    net(X, Y, lens)
    torch.testing.assert_close(torch.cat(weights, dim=1), net.decoder.attention_weights, atol=1e-6, rtol=1e-5)


# --- positions ------------------------------------------------------------------------------------------


def test_learned_positions_replace_the_tables_of_both_stacks():
    sinusoidal, learned = transformer_net(), transformer_net(positions="learned")
    for stack in (sinusoidal.encoder, sinusoidal.decoder):
        assert type(stack.pos_encoding) is PositionalEncoding
    for stack in (learned.encoder, learned.decoder):
        assert isinstance(stack.pos_encoding, LearnedPositionalEmbedding)
        P = stack.pos_encoding.P  # (1, 32, D): trained with the rest
        assert P.shape == (1, 32, D) and P.requires_grad
        assert 0.8 < P.std().item() < 1.2  # the scale of the token vectors (N(0, 1/d) times sqrt(d))
    extra = sum(p.numel() for p in learned.parameters()) - sum(p.numel() for p in sinusoidal.parameters())
    assert extra == 2 * 32 * D


def test_learned_positions_are_trained_and_limited_to_max_len(transformer_batch):
    X, lens, Y = transformer_batch
    net = transformer_net(positions="learned").train()
    net(X, Y, lens).sum().backward()
    grad = net.encoder.pos_encoding.P.grad[0]  # (32, D)
    assert grad[:7].abs().sum(dim=-1).min() > 0 and torch.equal(grad[7:], torch.zeros(25, D))  # T_src = 7
    with pytest.raises(ValueError, match=r"do not fit in the table of max_len=32"):
        net(torch.ones(1, 33, dtype=torch.long), Y[:1], torch.tensor([33]))


def test_unknown_positions_are_rejected():
    with pytest.raises(ValueError, match=r"positions must be one of \('sinusoidal', 'learned'\), got 'rotary'"):
        TransformerEncoderDecoder(V_SRC, V_TGT, num_hiddens=D, positions="rotary")


# --- counting the arithmetic ------------------------------------------------------------------------------


# --- the sequence tasks ---------------------------------------------------------------------------------


def test_transformer_learns_to_reverse_short_strings():
    src_vocab, tgt_vocab, train, _, test = make_sequence_task(600, 0, 100, min_len=2, max_len=5, alphabet="abcdef",
                                                              seed=0)
    torch.manual_seed(0)
    net = TransformerEncoderDecoder(len(src_vocab), len(tgt_vocab), num_hiddens=32, ffn_num_hiddens=64,
                                    num_heads=2, num_blks=1)
    losses = train_seq2seq(net, train, tgt_vocab, num_epochs=12, lr=0.005, batch_size=32, progress=False,
                           device="cpu")
    assert losses[-1] < 0.1 * losses[0]
    _, correct = evaluate_seq2seq(net, test, tgt_vocab)
    assert correct.float().mean() > 0.9


# --- GPU -------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decoding_on_the_gpu_matches_the_cpu(transformer_batch):
    X, lens, Y = transformer_batch
    net = transformer_net()
    cpu_logits = net(X, Y, lens)
    cpu_tokens = transformer_greedy_decode(net, X, lens, 1, 2, 6)
    net.to("cuda")
    X, lens, Y = X.cuda(), lens.cuda(), Y.cuda()
    torch.testing.assert_close(net(X, Y, lens).cpu(), cpu_logits, atol=1e-4, rtol=1e-4)
    for use_cache in (True, False):
        assert torch.equal(transformer_greedy_decode(net, X, lens, 1, 2, 6, use_cache=use_cache).cpu(), cpu_tokens)
