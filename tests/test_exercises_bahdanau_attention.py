"""The exercise checks of chapter 5 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch

import companion.seq2seq as s2s
from companion.decoding import greedy_decode
from companion.tasks.text import BOS, EOS
from companion.exercises import bahdanau_attention as ex

TF_CHECKS = [ex.check_teacher_forcing_small, ex.check_teacher_forcing_thorough]
STEP_CHECKS = [ex.check_attention_step_small, ex.check_attention_step_thorough]
GREEDY_CHECKS = [ex.check_greedy_search_small, ex.check_greedy_search_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def tf_ok(Y, bos):
    bos_column = torch.full((Y.shape[0], 1), bos, dtype=Y.dtype)  # (B, 1)
    return torch.cat((bos_column, Y[:, :-1]), dim=1)  # (B, T)


def step_ok(decoder, tokens, state, *, masked=True, layer=-1, swap_in=False, swap_out=False):
    enc_outputs, hidden, valid_lens = state  # (B, T, H), (L, B, H), (B,)
    emb = decoder.embedding(tokens).unsqueeze(1)  # (B, 1, E)
    query = hidden[layer].unsqueeze(1)  # (B, 1, H)
    context = decoder.attention(query, enc_outputs, enc_outputs, valid_lens if masked else None)  # (B, 1, H)
    x = torch.cat((context, emb) if swap_in else (emb, context), dim=-1)  # (B, 1, E + H)
    out, hidden = decoder.rnn(x, hidden)  # (B, 1, H), (L, B, H)
    features = torch.cat((context, out) if swap_out else (out, context), dim=-1)  # (B, 1, 2H)
    return decoder.dense(features).squeeze(1), hidden  # (B, V), (L, B, H)


def step_by_hand(decoder, tokens, state):
    """The additive attention written out instead of calling decoder.attention."""
    enc_outputs, hidden, valid_lens = state
    att = decoder.attention
    query = hidden[-1]  # (B, H)
    scores = att.w_v(torch.tanh(att.W_q(query).unsqueeze(1) + att.W_k(enc_outputs))).squeeze(-1)  # (B, T)
    mask = torch.arange(enc_outputs.shape[1])[None, :] < valid_lens[:, None]  # (B, T)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, T)
    context = torch.bmm(weights.unsqueeze(1), enc_outputs)  # (B, 1, H)
    emb = decoder.embedding(tokens).unsqueeze(1)  # (B, 1, E)
    out, hidden = decoder.rnn(torch.cat((emb, context), dim=-1), hidden)
    return decoder.dense(torch.cat((out, context), dim=-1))[:, 0], hidden


def greedy_ok(step, state, batch_size, bos, eos, num_steps, *, feed_back=True, carry=True, stop="each",
              keep_eos=True, early_exit=False):
    tokens = torch.full((batch_size,), bos, dtype=torch.long)  # (B,)
    done = torch.zeros(batch_size, dtype=torch.bool)  # (B,)
    first, out = state, []
    for _ in range(num_steps):
        logits, new_state = step(tokens if feed_back else torch.full((batch_size,), bos), state)
        state = new_state if carry else first
        tokens = logits.argmax(dim=-1)  # (B,)
        out.append(tokens if stop == "never" else tokens.masked_fill(done, 0))
        done = done | (tokens == eos)
        if stop == "any" and done.any():
            done[:] = True
        if early_exit and done.all():
            break
    result = torch.stack(out, dim=1)  # (B, steps taken)
    result = torch.nn.functional.pad(result, (0, num_steps - result.shape[1]))  # (B, num_steps)
    return result if keep_eos else result.masked_fill(result == eos, 0)


@pytest.mark.parametrize("check", TF_CHECKS)
def test_teacher_forcing_checks_accept_reference(check):
    check(tf_ok)
    check(s2s.teacher_forcing_inputs)


@pytest.mark.parametrize("check", STEP_CHECKS)
def test_attention_step_checks_accept_reference(check):
    check(step_ok)
    check(step_by_hand)


def test_attention_step_check_agrees_with_the_companion_decoder():
    # The check's reference is the decoder's own forward pass, one token long.
    def via_forward(decoder, tokens, state):
        logits, (_, hidden, _) = decoder(tokens[:, None], state)
        return logits[:, 0], hidden

    ex.check_attention_step_thorough(via_forward)


@pytest.mark.parametrize("check", GREEDY_CHECKS)
def test_greedy_checks_accept_reference(check):
    check(greedy_ok)
    check(lambda *args: greedy_ok(*args, early_exit=True))  # stopping once every row is done is fine


def test_greedy_reference_matches_the_companion_greedy_decode():
    # The companion's greedy_decode and the exercise's search agree on a real (untrained) model.
    torch.manual_seed(0)
    net = s2s.EncoderDecoder(s2s.Seq2SeqEncoder(12, 8, 8), s2s.Seq2SeqAttentionDecoder(9, 8, 8)).eval()
    X, lens = torch.randint(4, 12, (5, 6)), torch.tensor([6, 4, 3, 6, 1])
    with torch.no_grad():
        state = net.decoder.init_state(net.encoder(X, lens), lens)

        def step(tokens, state):
            logits, state = net.decoder(tokens[:, None], state)
            return logits[:, 0], state

        mine = greedy_ok(step, state, 5, BOS, EOS, 7)
    tokens, _ = greedy_decode(net, X, lens, bos=BOS, eos=EOS, num_steps=7)
    assert torch.equal(mine, tokens)


# --- diagnosed mistakes -----------------------------------------------------------------------------

TF_MISTAKES = {
    "unchanged": (lambda Y, bos: Y.clone(), r"returned the targets unchanged"),
    "left shift": (lambda Y, bos: torch.cat((Y[:, 1:], torch.zeros_like(Y[:, :1])), 1), r"shifted the targets to "
                   r"the left"),
    "bos at the end": (lambda Y, bos: torch.cat((Y[:, 1:], torch.full_like(Y[:, :1], bos)), 1), r"went to the end"),
    "one too many": (lambda Y, bos: torch.cat((torch.full_like(Y[:, :1], bos), Y), 1), r"one input too many"),
    "no bos": (lambda Y, bos: Y[:, :-1], r"forgot <bos> in front"),
    "overwritten": (lambda Y, bos: torch.cat((torch.full_like(Y[:, :1], bos), Y[:, 1:]), 1), r"overwrote the first"),
    "float": (lambda Y, bos: tf_ok(Y, bos).float(), r"floating-point numbers"),
}


@pytest.mark.parametrize("check", TF_CHECKS)
@pytest.mark.parametrize("mistake", sorted(TF_MISTAKES))
def test_teacher_forcing_checks_name_the_mistake(check, mistake):
    wrong, hint = TF_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_teacher_forcing_check_rejects_in_place_change():
    def in_place(Y, bos):
        Y[:, 1:] = Y[:, :-1].clone()
        Y[:, 0] = bos
        return Y

    with pytest.raises(AssertionError, match="in place"):
        ex.check_teacher_forcing_small(in_place)


def test_teacher_forcing_hidden_check_catches_a_hard_coded_bos():
    # Right for <bos> = 1 (the public check), wrong for any other index.
    def fixed_bos(Y, bos):
        return tf_ok(Y, 1)

    ex.check_teacher_forcing_small(fixed_bos)
    with pytest.raises(AssertionError, match="teacher_forcing_inputs"):
        ex.check_teacher_forcing_thorough(fixed_bos)


STEP_MISTAKES = {
    "unmasked": (lambda d, t, s: step_ok(d, t, s, masked=False), r"pass enc_valid_lens to the attention"),
    "swapped GRU input": (lambda d, t, s: step_ok(d, t, s, swap_in=True), r"GRU input is \[context; embedding\]"),
    "swapped output features": (lambda d, t, s: step_ok(d, t, s, swap_out=True), r"output layer sees \[context"),
    "time axis kept": (lambda d, t, s: (step_ok(d, t, s)[0].unsqueeze(1), step_ok(d, t, s)[1]), r"keep the time "
                       r"axis"),
    "probabilities": (lambda d, t, s: (step_ok(d, t, s)[0].softmax(-1), step_ok(d, t, s)[1]), r"returned "
                      r"probabilities"),
    "old state": (lambda d, t, s: (step_ok(d, t, s)[0], s[1]), r"returned the old state"),
    "GRU output as state": (lambda d, t, s: (step_ok(d, t, s)[0], step_ok(d, t, s)[1][-1:].transpose(0, 1)),
                            r"GRU output \(B, 1, H\) instead of its state"),
    "logits only": (lambda d, t, s: step_ok(d, t, s)[0], r"should return a pair \(logits, hidden\)"),
}


@pytest.mark.parametrize("check", STEP_CHECKS)
@pytest.mark.parametrize("mistake", sorted(STEP_MISTAKES))
def test_attention_step_checks_name_the_mistake(check, mistake):
    wrong, hint = STEP_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_attention_step_hidden_check_catches_the_bottom_layer_query():
    # With one layer hidden[0] is hidden[-1]: only the hidden check has two-layer decoders.
    def bottom_layer(d, t, s):
        return step_ok(d, t, s, layer=0)

    ex.check_attention_step_small(bottom_layer)
    with pytest.raises(AssertionError, match=r"bottom layer's state hidden\[0\]"):
        ex.check_attention_step_thorough(bottom_layer)


GREEDY_MISTAKES = {
    "no feedback": (lambda *a: greedy_ok(*a, feed_back=False), r"feed the argmax back"),
    "initial state": (lambda *a: greedy_ok(*a, carry=False), r"pass the state that `step` returns"),
    "never stops": (lambda *a: greedy_ok(*a, stop="never"), r"continues after its <eos>"),
    "stops all rows": (lambda *a: greedy_ok(*a, stop="any"), r"stopped every row"),
    "drops eos": (lambda *a: greedy_ok(*a, keep_eos=False), r"keep the <eos> itself"),
    "bos in front": (lambda step, state, b, bos, eos, n: torch.cat(
        (torch.full((b, 1), bos), greedy_ok(step, state, b, bos, eos, n)), 1), r"return only the num_steps"),
    "bos in front, one short": (lambda step, state, b, bos, eos, n: torch.cat(
        (torch.full((b, 1), bos), greedy_ok(step, state, b, bos, eos, n)[:, :-1]), 1), r"misses the last"),
    "probabilities": (lambda *a: greedy_ok(*a).float(), r"floating-point numbers"),
    "list": (lambda *a: greedy_ok(*a).tolist(), r"should return a torch.Tensor"),
}


@pytest.mark.parametrize("check", GREEDY_CHECKS)
@pytest.mark.parametrize("mistake", sorted(GREEDY_MISTAKES))
def test_greedy_checks_name_the_mistake(check, mistake):
    wrong, hint = GREEDY_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_greedy_check_counts_calls_of_step():
    def extra_calls(step, state, batch_size, bos, eos, num_steps):
        step(torch.full((batch_size,), bos), state)  # a wasted call before the search
        return greedy_ok(step, state, batch_size, bos, eos, num_steps)

    with pytest.raises(AssertionError, match=r"called step 7 times for num_steps = 6"):
        ex.check_greedy_search_small(extra_calls)


def test_greedy_hidden_check_catches_a_fixed_batch_size():
    def three_rows(step, state, batch_size, bos, eos, num_steps):
        return greedy_ok(step, state, 3, bos, eos, num_steps)

    ex.check_greedy_search_small(three_rows)
    with pytest.raises(AssertionError, match="greedy_search"):
        ex.check_greedy_search_thorough(three_rows)
