"""Tests for companion.seq2seq: encoder-decoders with and without Bahdanau attention (chapter 5)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from companion.decoding import greedy_decode  # noqa: E402
from companion.seq2seq import (  # noqa: E402
    Seq2SeqAttentionDecoder,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    sequence_loss,
    teacher_forcing_inputs,
)
from companion.training import train_seq2seq  # noqa: E402
from conftest import E, H, V_SRC, V_TGT, gru_net, tiny_date_net  # noqa: E402


# --- encoder -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_shapes(gru_batch, bidirectional, num_layers):
    X, lens, _ = gru_batch
    torch.manual_seed(0)
    enc = Seq2SeqEncoder(V_SRC, E, H, num_layers=num_layers, bidirectional=bidirectional)
    outputs, state = enc(X, lens)
    assert outputs.shape == (4, 7, H) and state.shape == (num_layers, 4, H)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_ignores_padding(gru_batch, bidirectional):
    # Each source alone, without padding, gives the same outputs at its positions and the same final state.
    X, lens, _ = gru_batch
    torch.manual_seed(0)
    enc = Seq2SeqEncoder(V_SRC, E, H, bidirectional=bidirectional).eval()
    outputs, state = enc(X, lens)
    for b, n in enumerate(lens.tolist()):
        alone_out, alone_state = enc(X[b : b + 1, :n])
        torch.testing.assert_close(outputs[b, :n], alone_out[0])
        torch.testing.assert_close(state[:, b], alone_state[:, 0])
        assert (outputs[b, n:] == 0).all()


def test_bidirectional_state_holds_both_directions(gru_batch):
    X, lens, _ = gru_batch
    torch.manual_seed(0)
    enc = Seq2SeqEncoder(V_SRC, E, H, bidirectional=True).eval()
    outputs, state = enc(X, lens)
    # Forward half: the output at the last real position; backward half: the output at position 0.
    for b, n in enumerate(lens.tolist()):
        torch.testing.assert_close(state[0, b, : H // 2], outputs[b, n - 1, : H // 2])
        torch.testing.assert_close(state[0, b, H // 2 :], outputs[b, 0, H // 2 :])


def test_bidirectional_encoder_needs_an_even_size():
    with pytest.raises(ValueError, match=r"must be even, got 7"):
        Seq2SeqEncoder(V_SRC, E, 7, bidirectional=True)


@pytest.mark.parametrize("attention", [False, True])
def test_decoders_reject_an_encoder_of_another_size(gru_batch, attention):
    X, lens, _ = gru_batch
    torch.manual_seed(0)
    decoder = (Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder)(V_TGT, E, H)
    too_wide = Seq2SeqEncoder(V_SRC, E, 2 * H)(X, lens)
    with pytest.raises(ValueError, match=r"\(1, B, 8\) to start this decoder, got \(1, 4, 16\)"):
        decoder.init_state(too_wide, lens)
    two_layers = Seq2SeqEncoder(V_SRC, E, H, num_layers=2)(X, lens)
    with pytest.raises(ValueError, match=r"same num_layers and num_hiddens"):
        decoder.init_state(two_layers, lens)


def test_attention_weights_need_a_forward_call_first():
    with pytest.raises(ValueError, match="call the decoder on a batch first"):
        Seq2SeqAttentionDecoder(V_TGT, E, H).attention_weights


# --- decoders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_decoder_logits_shape(gru_batch, attention, num_layers):
    X, lens, Y = gru_batch
    net = gru_net(attention, num_layers=num_layers)
    assert net(X, teacher_forcing_inputs(Y, 1), lens).shape == (4, 5, V_TGT)


def test_no_attention_decoder_keeps_the_encoder_summary_as_context(gru_batch):
    X, lens, Y = gru_batch
    net = gru_net(attention=False)
    enc_outputs = net.encoder(X, lens)
    state = net.decoder.init_state(enc_outputs, lens)
    _, (context, hidden) = net.decoder(Y, state)
    torch.testing.assert_close(context, enc_outputs[1][-1])  # unchanged after decoding
    assert not torch.allclose(hidden, enc_outputs[1])  # while the decoder's own state moved on


@pytest.mark.parametrize("bidirectional", [False, True])
def test_attention_weights_are_distributions_over_valid_positions(gru_batch, bidirectional):
    X, lens, Y = gru_batch
    net = gru_net(attention=True, bidirectional=bidirectional)
    net(X, teacher_forcing_inputs(Y, 1), lens)
    w = net.decoder.attention_weights
    assert w.shape == (4, 5, 7)
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(4, 5))
    beyond = torch.arange(7)[None, None, :] >= lens[:, None, None]  # (B, 1, T_src)
    assert (w.masked_select(beyond.expand_as(w)) == 0).all()
    assert (w.masked_select(~beyond.expand_as(w)) > 0).all()


def test_attention_decoder_ignores_whatever_sits_in_the_padding(gru_batch):
    X, lens, Y = gru_batch
    net = gru_net(attention=True)
    enc_outputs, hidden = net.encoder(X, lens)
    garbage = enc_outputs.clone()
    garbage[torch.arange(7)[None, :] >= lens[:, None]] = 100.0  # padded positions
    a, _ = net.decoder(Y, net.decoder.init_state((enc_outputs, hidden), lens))
    b, _ = net.decoder(Y, net.decoder.init_state((garbage, hidden), lens))
    torch.testing.assert_close(a, b)
    c, _ = net.decoder(Y, net.decoder.init_state((garbage, hidden), None))  # without the lengths it would not
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("attention", [False, True])
def test_decoding_step_by_step_equals_one_pass(gru_batch, attention):
    # Greedy decoding calls the decoder one token at a time; training calls it on the whole target.
    X, lens, Y = gru_batch
    net = gru_net(attention, num_layers=2)
    dec_X = teacher_forcing_inputs(Y, 1)
    state = net.decoder.init_state(net.encoder(X, lens), lens)
    whole, _ = net.decoder(dec_X, state)
    pieces, weights = [], []
    for t in range(dec_X.shape[1]):
        logits, state = net.decoder(dec_X[:, t : t + 1], state)
        pieces.append(logits)
        if attention:
            weights.append(net.decoder.attention_weights)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole)
    if attention:
        net.decoder(dec_X, net.decoder.init_state(net.encoder(X, lens), lens))
        torch.testing.assert_close(torch.cat(weights, dim=1), net.decoder.attention_weights)


# --- teacher forcing and the loss --------------------------------------------------------------------


def test_teacher_forcing_inputs_shift_right_behind_bos():
    Y = torch.tensor([[5, 6, 7, 2], [8, 9, 4, 2]])
    assert torch.equal(teacher_forcing_inputs(Y, 1), torch.tensor([[1, 5, 6, 7], [1, 8, 9, 4]]))
    with pytest.raises(ValueError, match=r"\(B, T\) tensor of indices, got shape \(4,\)"):
        teacher_forcing_inputs(Y[0], 1)


def test_sequence_loss_leaves_padding_out():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, generator=g)
    Y = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]])
    real = Y != 0
    expected = F.cross_entropy(logits[real], Y[real])
    torch.testing.assert_close(sequence_loss(logits, Y, pad=0), expected)
    changed = logits.clone()
    changed[~real] = 50.0  # what the model says at padded positions does not count
    torch.testing.assert_close(sequence_loss(changed, Y, pad=0), expected)
    with pytest.raises(ValueError, match=r"must match Y"):
        sequence_loss(logits, Y[:, :3], pad=0)


# --- training --------------------------------------------------------------------------------------------


# --- greedy decoding ---------------------------------------------------------------------------------


# --- accuracy by length and the alignment plot -------------------------------------------------------


# --- GPU -------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_and_decoding_on_the_gpu_match_the_cpu(tiny_dates):
    results = []
    for device in ("cpu", "cuda"):
        net = tiny_date_net(tiny_dates, attention=True)
        losses = train_seq2seq(net, tiny_dates.train, tiny_dates.tgt_vocab, num_epochs=2, lr=0.01, batch_size=32,
                               progress=False, device=device)
        assert next(net.parameters()).device.type == device
        X, lens = tiny_dates.test.X.to(device), tiny_dates.test.X_valid_len.to(device)
        tokens, weights = greedy_decode(net, X, lens, tiny_dates.tgt_vocab.bos, tiny_dates.tgt_vocab.eos, 11)
        assert tokens.device.type == device and weights.device.type == device
        results.append((losses, weights.cpu()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-3)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-3, rtol=1e-3)
