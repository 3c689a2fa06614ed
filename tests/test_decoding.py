"""Greedy decoding and evaluation (companion.decoding), chapters 5 and 9."""
from __future__ import annotations

import pytest
import torch

from companion.decoding import evaluate_seq2seq, greedy_decode, predict_seq2seq, transformer_greedy_decode
from companion.seq2seq import EncoderDecoder, teacher_forcing_inputs
from conftest import NullEncoder, ScriptedDecoder, gru_net, tiny_date_net, transformer_net


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


def test_greedy_decoding_feeds_back_its_own_prediction(gru_batch):
    X, lens, _ = gru_batch
    net = gru_net(attention=True)
    tokens, weights = greedy_decode(net, X, lens, bos=1, eos=2, num_steps=5)
    # Re-running the decoder on <bos> + its own outputs (teacher forcing with the predictions) gives them back.
    dec_X = teacher_forcing_inputs(tokens, 1)
    with torch.no_grad():
        logits = net(X, dec_X, lens)
    done = torch.cumsum(tokens == 2, dim=1) - (tokens == 2).long() > 0  # positions after an <eos>
    assert torch.equal(logits.argmax(-1)[~done], tokens[~done])
    assert weights.shape == (4, 5, 7)


def test_predict_and_evaluate_on_a_model_that_always_says_one_date(tiny_dates):
    v = tiny_dates.tgt_vocab
    fixed = tiny_dates.test.targets[0]
    script = torch.tensor([v.encode(fixed) + [v.eos]])  # (1, 11)

    class Always(ScriptedDecoder):
        def forward(self, X, state):
            logits, state = super().forward(X[:1], state)
            return logits.expand(X.shape[0], -1, -1), state

    net = EncoderDecoder(NullEncoder(), Always(script, len(v)))
    strings, weights = predict_seq2seq(net, ["3 march 21", "2021.03.03"], tiny_dates.src_vocab, v, num_steps=11)
    assert strings == [fixed, fixed] and weights is None
    predictions, correct = evaluate_seq2seq(net, tiny_dates.test, v, batch_size=7)
    assert predictions == [fixed] * len(tiny_dates.test)
    assert torch.equal(correct, torch.tensor([t == fixed for t in tiny_dates.test.targets]))


def test_predict_seq2seq_returns_weights_of_an_attention_model(tiny_dates):
    net = tiny_date_net(tiny_dates, attention=True).eval()
    sources = ["Wed, 3 Mar 2021", "03/03/21"]
    strings, weights = predict_seq2seq(net, sources, tiny_dates.src_vocab, tiny_dates.tgt_vocab, num_steps=11)
    assert len(strings) == 2 and all(isinstance(s, str) for s in strings)
    assert weights.shape == (2, 11, len(sources[0]) + 1)
    assert (weights[1, :, len(sources[1]) + 1 :] == 0).all()  # the shorter source's padding gets nothing


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_greedy_decoding_with_and_without_cache_gives_the_same_tokens(transformer_batch, positions):
    X, lens, _ = transformer_batch
    for seed in range(3):
        net = transformer_net(seed=seed, positions=positions)
        with_cache = transformer_greedy_decode(net, X, lens, 1, 2, 9, use_cache=True, stop_at_eos=False)
        without = transformer_greedy_decode(net, X, lens, 1, 2, 9, use_cache=False, stop_at_eos=False)
        assert with_cache.shape == (3, 9)
        assert torch.equal(with_cache, without)


def test_transformer_greedy_decoding_feeds_back_its_own_prediction(transformer_batch):
    X, lens, _ = transformer_batch
    net = transformer_net(seed=1)
    tokens = transformer_greedy_decode(net, X, lens, 1, 2, 5, stop_at_eos=False)  # (3, 5)
    dec_X = torch.cat([torch.ones(3, 1, dtype=torch.long), tokens[:, :-1]], dim=1)  # <bos>, then its outputs
    # Under teacher forcing with its own outputs as the target, the argmax is those outputs again.
    assert torch.equal(net(X, dec_X, lens).argmax(dim=-1), tokens)


def test_transformer_greedy_decoding_stops_at_eos_and_pads_after_it(transformer_batch):
    X, lens, _ = transformer_batch
    net = transformer_net()
    with torch.no_grad():
        net.decoder.dense.bias.fill_(-100.0)
        net.decoder.dense.bias[2] = 100.0  # <eos> always wins
    tokens = transformer_greedy_decode(net, X, lens, 1, 2, 6, pad=0)
    assert tokens.tolist() == [[2, 0, 0, 0, 0, 0]] * 3


def test_chapter_5_greedy_decode_runs_the_transformer_through_its_cache(transformer_batch):
    X, lens, _ = transformer_batch
    net = transformer_net(seed=2)
    tokens, weights = greedy_decode(net, X, lens, 1, 2, 7)
    assert torch.equal(tokens, transformer_greedy_decode(net, X, lens, 1, 2, 7))
    assert weights.shape == (3, 7, 7)
    torch.testing.assert_close(weights.sum(dim=-1)[tokens != 0], torch.ones(int((tokens != 0).sum())))
