"""Checks for the exercises of chapter 5, Bahdanau attention in a sequence-to-sequence model.

How a check works: companion.exercises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import built, call_on_copies, expect_close, expect_returned
from companion.seq2seq import Seq2SeqAttentionDecoder, teacher_forcing_inputs

__all__ = [
    "FORBIDDEN",
    "check_teacher_forcing_small",
    "check_teacher_forcing_thorough",
    "check_attention_step_small",
    "check_attention_step_thorough",
    "check_greedy_search_small",
    "check_greedy_search_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "teacher_forcing": ["companion.seq2seq.teacher_forcing_inputs"],
    "attention_step": ["companion.seq2seq.Seq2SeqAttentionDecoder.forward"],
    "greedy_search": [
        "companion.decoding.greedy_decode",
        "companion.decoding.transformer_greedy_decode",
        "companion.decoding.predict_seq2seq",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: decoder inputs under teacher forcing
# ---------------------------------------------------------------------------


def _teacher_forcing_mistakes(Y: Tensor, bos: int) -> dict[str, Tensor]:
    """What the usual wrong shifts return on ``Y``, keyed by the hint that names them."""
    B = Y.shape[0]
    bos_col = torch.full((B, 1), bos, dtype=Y.dtype)  # (B, 1)
    pad_col = torch.zeros((B, 1), dtype=Y.dtype)  # (B, 1)
    overwritten = Y.clone()
    overwritten[:, 0] = bos
    return {
        "you returned the targets unchanged: at step t the decoder must see the true token of step t - 1 (and "
        "<bos> at step 0), never the token it is asked to predict.": Y,
        "you shifted the targets to the left; shift them to the right: <bos>, then Y[:, :-1].": torch.cat(
            (Y[:, 1:], pad_col), dim=1
        ),
        "<bos> went to the end: it belongs at the start, torch.cat((bos_column, Y[:, :-1]), dim=1).": torch.cat(
            (Y[:, 1:], bos_col), dim=1
        ),
        "you put <bos> in front but kept the last token, so there is one input too many: drop the last target "
        "token, Y[:, :-1].": torch.cat((bos_col, Y), dim=1),
        "you dropped the last token but forgot <bos> in front: the first input is <bos>.": Y[:, :-1],
        "you overwrote the first target token with <bos> instead of shifting: every other token must move one "
        "step to the right.": overwritten,
    }


def _check_teacher_forcing_on(fn: Callable[..., Any], Y: Tensor, bos: int, seconds: float) -> None:
    actual = call_on_copies(fn, Y, bos, name="teacher_forcing_inputs", seconds=seconds)
    if isinstance(actual, Tensor) and actual.is_floating_point():
        raise AssertionError(
            "`teacher_forcing_inputs` returned floating-point numbers: the decoder inputs are token indices, "
            "keep the integer dtype of Y (torch.full(..., dtype=Y.dtype))."
        )
    expect_close(actual, teacher_forcing_inputs(Y, bos), name="teacher_forcing_inputs",
                 mistakes=_teacher_forcing_mistakes(Y, bos), atol=0, rtol=0)


def check_teacher_forcing_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: two targets of four tokens (the last is <eos> = 2), <bos> = 1."""
    Y = torch.tensor([[5, 6, 7, 2], [8, 9, 4, 2]])
    _check_teacher_forcing_on(fn, Y, 1, seconds)


def check_teacher_forcing_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: random batch sizes and lengths, one example, one step, another <bos> index."""
    gen = torch.Generator().manual_seed(5)
    for B, T, bos in [(3, 11, 1), (1, 6, 1), (7, 2, 4), (4, 1, 1), (2, 9, 13)]:
        Y = torch.randint(3, 20, (B, T), generator=gen)
        _check_teacher_forcing_on(fn, Y, bos, seconds)


# ---------------------------------------------------------------------------
# Exercise 2: one step of the attention decoder
# ---------------------------------------------------------------------------


def _step_reference(decoder: Seq2SeqAttentionDecoder, tokens: Tensor, state: tuple) -> tuple[Tensor, Tensor]:
    logits, (_, hidden, _) = decoder(tokens.unsqueeze(1), state)  # (B, 1, V), (L, B, H)
    return logits[:, 0], hidden


def _step_variant(
    decoder: Seq2SeqAttentionDecoder,
    tokens: Tensor,
    state: tuple,
    *,
    masked: bool = True,
    layer: int = -1,
    input_order: str = "emb_ctx",
    output_order: str = "out_ctx",
    weights_only: bool = False,
) -> tuple[Tensor, Tensor] | Tensor:
    """The step with one thing changed, as a learner might write it (for the hints)."""
    enc_outputs, hidden, valid_lens = state
    emb = decoder.embedding(tokens).unsqueeze(1)  # (B, 1, E)
    query = hidden[layer].unsqueeze(1)  # (B, 1, H)
    context = decoder.attention(query, enc_outputs, enc_outputs, valid_lens if masked else None)  # (B, 1, H)
    if weights_only:
        return decoder.attention.attention_weights[:, 0]  # (B, T_src)
    x = torch.cat((emb, context) if input_order == "emb_ctx" else (context, emb), dim=-1)  # (B, 1, E + H)
    out, new_hidden = decoder.rnn(x, hidden)  # (B, 1, H), (L, B, H)
    features = torch.cat((out, context) if output_order == "out_ctx" else (context, out), dim=-1)  # (B, 1, 2H)
    return decoder.dense(features)[:, 0], new_hidden  # (B, V), (L, B, H)


def _step_logit_mistakes(decoder: Seq2SeqAttentionDecoder, tokens: Tensor, state: tuple) -> dict[str, Tensor]:
    logits, _ = _step_reference(decoder, tokens, state)
    mistakes = {
        "the logits keep the time axis: return shape (B, V), e.g. logits[:, 0] or .squeeze(1).": logits.unsqueeze(1),
        "you returned probabilities: return the logits, the scores before the softmax.": torch.softmax(logits, -1),
        "the padding of the source gets attention weight: pass enc_valid_lens to the attention, "
        "decoder.attention(query, enc_outputs, enc_outputs, enc_valid_lens).": _step_variant(
            decoder, tokens, state, masked=False)[0],
        "the GRU input is [context; embedding]: the decoder's GRU was trained on [embedding; context], "
        "torch.cat((emb, context), dim=-1).": _step_variant(decoder, tokens, state, input_order="ctx_emb")[0],
        "the output layer sees [context; GRU output]: it was trained on [GRU output; context].": _step_variant(
            decoder, tokens, state, output_order="ctx_out")[0],
    }
    if state[1].shape[0] > 1:
        mistakes["the query is the bottom layer's state hidden[0]: use the top layer's, hidden[-1]."] = (
            _step_variant(decoder, tokens, state, layer=0)[0]
        )
    return mistakes


def _attention_decoder(vocab_size: int, size: int, num_layers: int, seed: int) -> Seq2SeqAttentionDecoder:
    # Embedding and hidden sizes are equal, so a swapped concatenation still runs and can be diagnosed.
    torch.manual_seed(seed)
    decoder = built(Seq2SeqAttentionDecoder, vocab_size, size, size, num_layers=num_layers)
    return decoder.eval()


def _check_attention_step_on(
    fn: Callable[..., Any], B: int, T: int, vocab_size: int, size: int, num_layers: int, seed: int, seconds: float
) -> None:
    rng_state = torch.random.get_rng_state()
    try:
        decoder = _attention_decoder(vocab_size, size, num_layers, seed)
        gen = torch.Generator().manual_seed(seed)
        enc_outputs = torch.randn(B, T, size, generator=gen)  # (B, T, H), padding positions not zero on purpose
        hidden = torch.randn(num_layers, B, size, generator=gen)  # (L, B, H)
        valid_lens = torch.randint(1, T + 1, (B,), generator=gen)  # (B,)
        valid_lens[0] = max(1, T - 2)  # at least one source with padding
        tokens = torch.randint(3, vocab_size, (B,), generator=gen)  # (B,)
    finally:
        torch.random.set_rng_state(rng_state)
    state = (enc_outputs, hidden, valid_lens)
    with torch.no_grad():
        actual = call_on_copies(fn, decoder, tokens, state, name="attention_step", seconds=seconds)
        expect_returned(actual, name="attention_step")
        if not (isinstance(actual, tuple) and len(actual) == 2):
            raise AssertionError(
                "`attention_step` should return a pair (logits, hidden): the logits (B, V) of this step and the "
                f"GRU's new state (L, B, H); it returned {type(actual).__name__}"
                + (f" of length {len(actual)}." if isinstance(actual, (tuple, list)) else ".")
            )
        logits, new_hidden = actual
        expected_logits, expected_hidden = _step_reference(decoder, tokens, state)
        expect_close(logits, expected_logits, name="attention_step",
                     mistakes=_step_logit_mistakes(decoder, tokens, state))
        expect_close(new_hidden, expected_hidden, name="attention_step (the hidden state)", mistakes={
            "you returned the old state: return the state the GRU gives back, `out, hidden = decoder.rnn(x, hidden)`."
            : hidden,
            "you returned the GRU output (B, 1, H) instead of its state (L, B, H).": expected_hidden[-1].unsqueeze(1),
        })


def check_attention_step_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a one-layer decoder, three sources of up to five positions, one of them padded."""
    _check_attention_step_on(fn, B=3, T=5, vocab_size=9, size=6, num_layers=1, seed=0, seconds=seconds)


def check_attention_step_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: two-layer decoders, a single example, long sources with a lot of padding."""
    for B, T, V, size, layers, seed in [(4, 9, 12, 8, 2, 1), (1, 7, 15, 5, 1, 2), (6, 20, 11, 4, 2, 3)]:
        _check_attention_step_on(fn, B=B, T=T, vocab_size=V, size=size, num_layers=layers, seed=seed,
                                 seconds=seconds)


# ---------------------------------------------------------------------------
# Exercise 3: greedy search with a step function
# ---------------------------------------------------------------------------

_BOS, _EOS, _VOCAB = 1, 2, 7


class _ScriptedStep:
    """A stand-in decoder step whose next token depends on the input token and on the state.

    tokens (B,), state (B,) long -> logits (B, V), state + 1. After <eos> it keeps predicting real tokens, so a
    search that does not stop would show them.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += 1
        nxt = (3 * tokens + state) % 6 + 1  # (B,) in 1..6; 2 is <eos>
        nxt = torch.where(tokens == _EOS, torch.full_like(nxt, 5), nxt)  # a real token after <eos>
        logits = torch.nn.functional.one_hot(nxt, _VOCAB).float() * 4.0 - 2.0  # (B, V)
        return logits, state + 1


def _scripted_search(
    state: Tensor, num_steps: int, *, feed_back: bool = True, carry_state: bool = True, stop: str = "each",
    keep_eos: bool = True,
) -> Tensor:
    """Greedy search on _ScriptedStep, with one thing optionally done wrong (for the hints)."""
    step = _ScriptedStep()
    B = state.shape[0]
    tokens = torch.full((B,), _BOS, dtype=torch.long)  # (B,)
    first_state, out = state, []
    done = torch.zeros(B, dtype=torch.bool)  # (B,)
    for _ in range(num_steps):
        logits, new_state = step(tokens if feed_back else torch.full((B,), _BOS), state)
        state = new_state if carry_state else first_state
        tokens = logits.argmax(dim=-1)  # (B,)
        out.append(tokens.masked_fill(done, 0) if stop != "never" else tokens)
        done = done | (tokens == _EOS)
        if stop == "any" and done.any():
            done[:] = True
    result = torch.stack(out, dim=1)  # (B, num_steps)
    if not keep_eos:
        result = result.masked_fill(result == _EOS, 0)
    return result


def _greedy_mistakes(state: Tensor, num_steps: int) -> dict[str, Tensor]:
    ref = _scripted_search(state, num_steps)
    bos_col = torch.full((state.shape[0], 1), _BOS, dtype=torch.long)
    return {
        "each step must get the token predicted at the step before (it starts with <bos>): feed the argmax back "
        "in as the next input.": _scripted_search(state, num_steps, feed_back=False),
        "pass the state that `step` returns to the next call, not the initial state every time.": _scripted_search(
            state, num_steps, carry_state=False),
        "a sequence continues after its <eos>: replace every token after the first <eos> of a row by 0 "
        "(<pad>).": _scripted_search(state, num_steps, stop="never"),
        "you stopped every row when the first row reached <eos>: each row stops at its own <eos>.": _scripted_search(
            state, num_steps, stop="any"),
        "keep the <eos> itself in the output; only the tokens after it become 0.": _scripted_search(
            state, num_steps, keep_eos=False),
        "the output starts with <bos>: return only the num_steps predicted tokens.": torch.cat(
            (bos_col, ref), dim=1),
        "the output starts with <bos> and misses the last prediction: return the num_steps predicted "
        "tokens.": torch.cat((bos_col, ref[:, :-1]), dim=1),
    }


def _check_greedy_on(fn: Callable[..., Any], state: Tensor, num_steps: int, seconds: float) -> None:
    step = _ScriptedStep()
    actual = call_on_copies(fn, step, state, state.shape[0], _BOS, _EOS, num_steps, name="greedy_search",
                            seconds=seconds)
    if isinstance(actual, Tensor) and actual.is_floating_point():
        raise AssertionError("`greedy_search` returned floating-point numbers: return token indices, the argmax "
                             "of the logits (torch.long).")
    expect_close(actual, _scripted_search(state, num_steps), name="greedy_search",
                 mistakes=_greedy_mistakes(state, num_steps), atol=0, rtol=0)
    if step.calls > num_steps:
        raise AssertionError(f"`greedy_search` called step {step.calls} times for num_steps = {num_steps}: one "
                             "call per output token is enough.")


def check_greedy_search_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: three rows that reach <eos> at different steps, six steps."""
    _check_greedy_on(fn, torch.tensor([0, 2, 5]), 6, seconds)


def check_greedy_search_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: other batches and lengths, a single row, one step, rows that never reach <eos>."""
    gen = torch.Generator().manual_seed(3)
    for B, steps in [(5, 8), (1, 5), (8, 1), (12, 10)]:
        _check_greedy_on(fn, torch.randint(0, 6, (B,), generator=gen), steps, seconds)
