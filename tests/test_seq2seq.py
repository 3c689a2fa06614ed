"""Tests for companion.seq2seq: encoder-decoders with and without Bahdanau attention (chapter 5)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from companion.dates import make_date_data  # noqa: E402
from companion.seq2seq import (  # noqa: E402
    EncoderDecoder,
    Seq2SeqAttentionDecoder,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    accuracy_by_length,
    evaluate_seq2seq,
    greedy_decode,
    predict_seq2seq,
    sequence_loss,
    show_alignment,
    teacher_forcing_inputs,
    train_seq2seq,
)

V_SRC, V_TGT, E, H = 13, 9, 6, 8


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(4, V_SRC, (4, 7), generator=g)  # (B, T_src)
    lens = torch.tensor([7, 3, 5, 1])  # (B,)
    X[torch.arange(7)[None, :] >= lens[:, None]] = 0  # <pad> after each source
    Y = torch.randint(3, V_TGT, (4, 5), generator=g)  # (B, T_tgt)
    return X, lens, Y


def make_net(attention: bool, bidirectional: bool = False, num_layers: int = 1, seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    encoder = Seq2SeqEncoder(V_SRC, E, H, num_layers=num_layers, bidirectional=bidirectional)
    decoder_cls = Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder
    return EncoderDecoder(encoder, decoder_cls(V_TGT, E, H, num_layers=num_layers)).eval()


# --- encoder -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_shapes(batch, bidirectional, num_layers):
    X, lens, _ = batch
    torch.manual_seed(0)
    enc = Seq2SeqEncoder(V_SRC, E, H, num_layers=num_layers, bidirectional=bidirectional)
    outputs, state = enc(X, lens)
    assert outputs.shape == (4, 7, H) and state.shape == (num_layers, 4, H)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_ignores_padding(batch, bidirectional):
    # Each source alone, without padding, gives the same outputs at its positions and the same final state.
    X, lens, _ = batch
    torch.manual_seed(0)
    enc = Seq2SeqEncoder(V_SRC, E, H, bidirectional=bidirectional).eval()
    outputs, state = enc(X, lens)
    for b, n in enumerate(lens.tolist()):
        alone_out, alone_state = enc(X[b : b + 1, :n])
        torch.testing.assert_close(outputs[b, :n], alone_out[0])
        torch.testing.assert_close(state[:, b], alone_state[:, 0])
        assert (outputs[b, n:] == 0).all()


def test_bidirectional_state_holds_both_directions(batch):
    X, lens, _ = batch
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
def test_decoders_reject_an_encoder_of_another_size(batch, attention):
    X, lens, _ = batch
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
def test_encoder_decoder_logits_shape(batch, attention, num_layers):
    X, lens, Y = batch
    net = make_net(attention, num_layers=num_layers)
    assert net(X, teacher_forcing_inputs(Y, 1), lens).shape == (4, 5, V_TGT)


def test_no_attention_decoder_keeps_the_encoder_summary_as_context(batch):
    X, lens, Y = batch
    net = make_net(attention=False)
    enc_outputs = net.encoder(X, lens)
    state = net.decoder.init_state(enc_outputs, lens)
    _, (context, hidden) = net.decoder(Y, state)
    torch.testing.assert_close(context, enc_outputs[1][-1])  # unchanged after decoding
    assert not torch.allclose(hidden, enc_outputs[1])  # while the decoder's own state moved on


@pytest.mark.parametrize("bidirectional", [False, True])
def test_attention_weights_are_distributions_over_valid_positions(batch, bidirectional):
    X, lens, Y = batch
    net = make_net(attention=True, bidirectional=bidirectional)
    net(X, teacher_forcing_inputs(Y, 1), lens)
    w = net.decoder.attention_weights
    assert w.shape == (4, 5, 7)
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(4, 5))
    beyond = torch.arange(7)[None, None, :] >= lens[:, None, None]  # (B, 1, T_src)
    assert (w.masked_select(beyond.expand_as(w)) == 0).all()
    assert (w.masked_select(~beyond.expand_as(w)) > 0).all()


def test_attention_decoder_ignores_whatever_sits_in_the_padding(batch):
    X, lens, Y = batch
    net = make_net(attention=True)
    enc_outputs, hidden = net.encoder(X, lens)
    garbage = enc_outputs.clone()
    garbage[torch.arange(7)[None, :] >= lens[:, None]] = 100.0  # padded positions
    a, _ = net.decoder(Y, net.decoder.init_state((enc_outputs, hidden), lens))
    b, _ = net.decoder(Y, net.decoder.init_state((garbage, hidden), lens))
    torch.testing.assert_close(a, b)
    c, _ = net.decoder(Y, net.decoder.init_state((garbage, hidden), None))  # without the lengths it would not
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("attention", [False, True])
def test_decoding_step_by_step_equals_one_pass(batch, attention):
    # Greedy decoding calls the decoder one token at a time; training calls it on the whole target.
    X, lens, Y = batch
    net = make_net(attention, num_layers=2)
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
    with pytest.raises(ValueError, match=r"\(batch, time\) tensor of indices, got shape \(4,\)"):
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


@pytest.fixture(scope="module")
def tiny():
    return make_date_data(n_train=96, n_valid=8, n_test=32, seed=1)


def tiny_net(data, attention: bool, seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    enc = Seq2SeqEncoder(len(data.src_vocab), 16, 32, bidirectional=True)
    dec = (Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder)(len(data.tgt_vocab), 16, 32)
    return EncoderDecoder(enc, dec)


@pytest.mark.parametrize("attention", [False, True])
def test_teacher_forced_loss_decreases_on_a_tiny_set(tiny, attention):
    net = tiny_net(tiny, attention)
    losses = train_seq2seq(net, tiny.train, tiny.tgt_vocab, num_epochs=12, lr=0.02, batch_size=32,
                           progress=False, device="cpu")
    assert len(losses) == 12 and all(type(v) is float for v in losses)
    assert losses[-1] < 0.6 * losses[0]


def test_training_is_deterministic_for_a_seed(tiny):
    runs = []
    for _ in range(2):
        net = tiny_net(tiny, attention=True)
        losses = train_seq2seq(net, tiny.train, tiny.tgt_vocab, num_epochs=2, lr=0.01, batch_size=32, seed=3,
                               progress=False, device="cpu")
        runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    net = tiny_net(tiny, attention=True)
    other = train_seq2seq(net, tiny.train, tiny.tgt_vocab, num_epochs=2, lr=0.01, batch_size=32, seed=4,
                          progress=False, device="cpu")
    assert other != runs[0][0]  # another seed, another batch order


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_epochs": 0}, r"num_epochs must be an int >= 1, got 0"), ({"lr": 0.0}, r"lr must be > 0, got 0.0"),
     ({"grad_clip": -1.0}, r"grad_clip must be > 0, got -1.0"), ({"num_epochs": 1.5}, r"got 1.5")],
)
def test_train_seq2seq_rejects_bad_arguments(tiny, kwargs, message):
    args = {"num_epochs": 1, "lr": 0.01, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_seq2seq(tiny_net(tiny, False), tiny.train, tiny.tgt_vocab, progress=False, device="cpu", **args)


def test_train_seq2seq_leaves_the_thread_count_as_it_was(tiny):
    before = torch.get_num_threads()
    train_seq2seq(tiny_net(tiny, False), tiny.train, tiny.tgt_vocab, num_epochs=1, lr=0.01, progress=False,
                  device="cpu")
    assert torch.get_num_threads() == before


def test_train_seq2seq_progress_bar_follows_companion_progress(tiny, capfd, monkeypatch):
    monkeypatch.setenv("COMPANION_PROGRESS", "0")
    train_seq2seq(tiny_net(tiny, False), tiny.train, tiny.tgt_vocab, num_epochs=1, lr=0.01, device="cpu")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    monkeypatch.setenv("COMPANION_PROGRESS", "1")
    train_seq2seq(tiny_net(tiny, False), tiny.train, tiny.tgt_vocab, num_epochs=1, lr=0.01, device="cpu")
    out, err = capfd.readouterr()
    assert "train" in out + err and "loss" in out + err


# --- greedy decoding ---------------------------------------------------------------------------------


class ScriptedDecoder(nn.Module):
    """Says the tokens of `script[b]` one by one, whatever it is fed; counts its calls."""

    def __init__(self, script: torch.Tensor, vocab_size: int) -> None:
        super().__init__()
        self.script, self.vocab_size, self.calls = script, vocab_size, 0
        self.dummy = nn.Parameter(torch.zeros(()))

    def init_state(self, enc_all_outputs, enc_valid_lens=None):
        return 0

    def forward(self, X, state):
        self.calls += 1
        column = self.script[:, min(state, self.script.shape[1] - 1)]  # (B,)
        return F.one_hot(column, self.vocab_size).float().unsqueeze(1), state + 1  # (B, 1, V)


class NullEncoder(nn.Module):
    def forward(self, X, valid_lens=None):
        return torch.zeros(X.shape[0], X.shape[1], 1), torch.zeros(1, X.shape[0], 1)


def test_greedy_decoding_stops_at_eos_and_pads_after_it():
    eos, pad = 2, 0
    script = torch.tensor([[5, 2, 7, 7, 7], [6, 6, 6, 2, 8], [2, 4, 4, 4, 4]])
    net = EncoderDecoder(NullEncoder(), ScriptedDecoder(script, 9))
    tokens, weights = greedy_decode(net, torch.ones(3, 4, dtype=torch.long), torch.tensor([4, 4, 4]), bos=1,
                                    eos=eos, num_steps=6, pad=pad)
    assert weights is None  # this decoder has no attention
    assert torch.equal(tokens, torch.tensor([[5, 2, 0, 0, 0, 0], [6, 6, 6, 2, 0, 0], [2, 0, 0, 0, 0, 0]]))
    assert net.decoder.calls == 4  # it stops as soon as every row has said <eos>


def test_greedy_decoding_runs_num_steps_when_eos_never_comes():
    script = torch.tensor([[5, 6, 7, 8]])
    net = EncoderDecoder(NullEncoder(), ScriptedDecoder(script, 9))
    tokens, _ = greedy_decode(net, torch.ones(1, 2, dtype=torch.long), torch.tensor([2]), 1, 2, num_steps=3)
    assert torch.equal(tokens, torch.tensor([[5, 6, 7]])) and net.decoder.calls == 3


def test_greedy_decoding_feeds_back_its_own_prediction(batch):
    X, lens, _ = batch
    net = make_net(attention=True)
    tokens, weights = greedy_decode(net, X, lens, bos=1, eos=2, num_steps=5)
    # Re-running the decoder on <bos> + its own outputs (teacher forcing with the predictions) gives them back.
    dec_X = teacher_forcing_inputs(tokens, 1)
    with torch.no_grad():
        logits = net(X, dec_X, lens)
    done = torch.cumsum(tokens == 2, dim=1) - (tokens == 2).long() > 0  # positions after an <eos>
    assert torch.equal(logits.argmax(-1)[~done], tokens[~done])
    assert weights.shape == (4, 5, 7)


def test_predict_and_evaluate_on_a_model_that_always_says_one_date(tiny):
    v = tiny.tgt_vocab
    fixed = tiny.test.targets[0]
    script = torch.tensor([v.encode(fixed) + [v.eos]])  # (1, 11)

    class Always(ScriptedDecoder):
        def forward(self, X, state):
            logits, state = super().forward(X[:1], state)
            return logits.expand(X.shape[0], -1, -1), state

    net = EncoderDecoder(NullEncoder(), Always(script, len(v)))
    strings, weights = predict_seq2seq(net, ["3 march 21", "2021.03.03"], tiny.src_vocab, v, num_steps=11)
    assert strings == [fixed, fixed] and weights is None
    predictions, correct = evaluate_seq2seq(net, tiny.test, v, batch_size=7)
    assert predictions == [fixed] * len(tiny.test)
    assert torch.equal(correct, torch.tensor([t == fixed for t in tiny.test.targets]))


def test_predict_seq2seq_returns_weights_of_an_attention_model(tiny):
    net = tiny_net(tiny, attention=True).eval()
    sources = ["Wed, 3 Mar 2021", "03/03/21"]
    strings, weights = predict_seq2seq(net, sources, tiny.src_vocab, tiny.tgt_vocab, num_steps=11)
    assert len(strings) == 2 and all(isinstance(s, str) for s in strings)
    assert weights.shape == (2, 11, len(sources[0]) + 1)
    assert (weights[1, :, len(sources[1]) + 1 :] == 0).all()  # the shorter source's padding gets nothing


# --- accuracy by length and the alignment plot -------------------------------------------------------


def test_accuracy_by_length_buckets():
    correct = torch.tensor([True, False, True, True, False, True])
    lengths = torch.tensor([8, 9, 12, 15, 30, 31])
    labels, acc, counts = accuracy_by_length(correct, lengths, [8, 10, 20, 40, 50])
    assert labels == ["8-9", "10-19", "20-39", "40-49"]
    assert torch.equal(counts, torch.tensor([2, 2, 2, 0]))
    torch.testing.assert_close(acc[:3], torch.tensor([0.5, 1.0, 0.5]))
    assert torch.isnan(acc[3])
    with pytest.raises(ValueError, match="increasing"):
        accuracy_by_length(correct, lengths, [10, 10])
    with pytest.raises(ValueError, match="same shape"):
        accuracy_by_length(correct, lengths[:3], [0, 50])


def test_show_alignment_labels_the_characters():
    w = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = show_alignment(w, ["a", " ", "b", "<eos>"], ["x", "y", "<eos>"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "␣", "b", "⏎"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "⏎"]
    assert ax.get_xlabel() == "input characters" and ax.get_ylabel() == "output characters"
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"\(len\(tgt_tokens\), len\(src_tokens\)\) = \(3, 3\), got \(3, 4\)"):
        show_alignment(w, ["a", "b", "c"], ["x", "y", "z"])


# --- GPU -------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_and_decoding_on_the_gpu_match_the_cpu(tiny):
    results = []
    for device in ("cpu", "cuda"):
        net = tiny_net(tiny, attention=True)
        losses = train_seq2seq(net, tiny.train, tiny.tgt_vocab, num_epochs=2, lr=0.01, batch_size=32,
                               progress=False, device=device)
        assert next(net.parameters()).device.type == device
        X, lens = tiny.test.X.to(device), tiny.test.X_valid_len.to(device)
        tokens, weights = greedy_decode(net, X, lens, tiny.tgt_vocab.bos, tiny.tgt_vocab.eos, 11)
        assert tokens.device.type == device and weights.device.type == device
        results.append((losses, weights.cpu()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-3)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-3, rtol=1e-3)
