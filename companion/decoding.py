"""Greedy decoding of sequence-to-sequence models, and their exact-match accuracy.

Chapter 5 decodes its GRU models with ``greedy_decode``; chapter 9 decodes the
Transformer with it too (through the decoder's cache), and with
``transformer_greedy_decode`` to compare decoding with and without the cache.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from .seq2seq import EncoderDecoder
from .tasks.text import DateSplit, Vocab, encode_texts
from .utils import check_positive_int, one_thread_on_cpu

if TYPE_CHECKING:
    from .transformer_seq2seq import TransformerEncoderDecoder

__all__ = [
    "greedy_decode", "transformer_greedy_decode", "predict_seq2seq", "evaluate_seq2seq",
]


@torch.no_grad()
def greedy_decode(
    net: EncoderDecoder,
    X: Tensor,
    X_valid_len: Tensor,
    bos: int,
    eos: int,
    num_steps: int,
    pad: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Greedy decoding of a batch: feed back the likeliest token until <eos> (ch. 5).

    Shapes: X (B, T_src), X_valid_len (B,) -> tokens (B, num_steps) long (<eos>, then
    <pad> after it), attention weights (B, num_steps, T_src) or None for a decoder
    without attention.
    """
    net.eval()
    enc_all_outputs = net.encoder(X, X_valid_len)
    state = net.decoder.init_state(enc_all_outputs, X_valid_len)
    B = X.shape[0]
    dec_X = torch.full((B, 1), bos, dtype=torch.long, device=X.device)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=X.device)  # (B,)
    tokens, weights = [], []
    for _ in range(num_steps):
        logits, state = net.decoder(dec_X, state)  # (B, 1, V)
        dec_X = logits.argmax(dim=-1)  # (B, 1): the prediction is the next input
        # A sequence that has produced <eos> is done: what the decoder says
        # afterwards is padding.
        tokens.append(dec_X[:, 0].masked_fill(finished, pad))  # (B,)
        if hasattr(net.decoder, "attention_weights"):
            weights.append(net.decoder.attention_weights)  # (B, 1, T_src)
        finished |= dec_X[:, 0] == eos
        if finished.all():
            break
    out = _pad_steps(torch.stack(tokens, dim=1), num_steps, pad)  # (B, num_steps)
    if not weights:
        return out, None
    attn = torch.cat(weights, dim=1)  # (B, steps taken, T_src)
    # (B, num_steps, T_src): no weights for the steps not taken.
    return out, F.pad(attn, (0, 0, 0, num_steps - attn.shape[1]))


def _pad_steps(tokens: Tensor, num_steps: int, pad: int) -> Tensor:
    """The tokens of the steps taken, then <pad>.  Shapes: -> (B, num_steps)."""
    return F.pad(tokens, (0, num_steps - tokens.shape[1]), value=pad)


@torch.no_grad()
def transformer_greedy_decode(
    net: TransformerEncoderDecoder,
    X: Tensor,
    X_valid_len: Tensor,
    bos: int,
    eos: int,
    num_steps: int,
    pad: int = 0,
    *,
    use_cache: bool = True,
    stop_at_eos: bool = True,
) -> Tensor:
    """Greedy decoding with or without the KV cache: the same tokens (ch. 9, greedy).

    Shapes: X (B, T_src), X_valid_len (B,) -> tokens (B, num_steps) long, <pad> after
    each <eos>. Without the cache every step runs the decoder over the whole prefix
    and keeps the last position's logits; with it every step feeds only the newest
    token. stop_at_eos=False always runs num_steps steps (for timing).
    """
    check_positive_int("num_steps", num_steps)
    net.eval()
    # Computed once in both modes.
    enc_outputs = net.encoder(X, X_valid_len)  # (B, T_src, d)
    state = net.decoder.init_state(enc_outputs, X_valid_len, use_cache=use_cache)
    B = X.shape[0]
    prefix = torch.full((B, 1), bos, dtype=torch.long, device=X.device)  # (B, 1): <bos>
    finished = torch.zeros(B, dtype=torch.bool, device=X.device)
    tokens: list[Tensor] = []
    for _ in range(num_steps):
        # With the cache, only the newest token goes in; without, the whole prefix is
        # decoded again.
        step_input = prefix[:, -1:] if use_cache else prefix
        logits, state = net.decoder(step_input, state)  # (B, 1, V) or (B, t, V)
        next_token = logits[:, -1].argmax(dim=-1)  # (B,)
        tokens.append(next_token.masked_fill(finished, pad))
        finished |= next_token == eos
        prefix = torch.cat([prefix, next_token[:, None]], dim=1)  # (B, t + 1)
        if stop_at_eos and finished.all():
            break
    return _pad_steps(torch.stack(tokens, dim=1), num_steps, pad)  # (B, num_steps)


def predict_seq2seq(
    net: EncoderDecoder,
    sources: Sequence[str],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    num_steps: int,
    device: torch.device | str | None = None,
) -> tuple[list[str], Tensor | None]:
    """Translate strings with greedy decoding (chapter 5; d2l's, batched).

    Shapes: N strings -> N strings, attention weights (N, num_steps, T_src) or None.
    """
    device = torch.device(device) if device is not None else _device_of(net)
    X, lens = encode_texts(sources, src_vocab)  # (N, T_src), (N,)
    tokens, weights = greedy_decode(net, X.to(device), lens.to(device), tgt_vocab.bos,
                                    tgt_vocab.eos, num_steps, tgt_vocab.pad)
    strings = [tgt_vocab.decode(row) for row in tokens.cpu()]
    return strings, None if weights is None else weights.cpu()


@torch.no_grad()
def evaluate_seq2seq(
    net: EncoderDecoder,
    data: DateSplit,
    tgt_vocab: Vocab,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> tuple[list[str], Tensor]:
    """Greedy predictions for a whole split, and which match the target (chapter 5).

    Shapes: data of N examples -> N strings, correct (N,) bool.
    """
    device = torch.device(device) if device is not None else _device_of(net)
    num_steps = data.Y.shape[1]
    predictions: list[str] = []
    with one_thread_on_cpu(device):
        for X, X_valid_len, _, _ in data.batches(batch_size):
            tokens, _ = greedy_decode(net, X.to(device), X_valid_len.to(device),
                                      tgt_vocab.bos, tgt_vocab.eos, num_steps,
                                      tgt_vocab.pad)  # (B, num_steps)
            predictions += [tgt_vocab.decode(row) for row in tokens.cpu()]
    correct = [p == t for p, t in zip(predictions, data.targets)]
    return predictions, torch.tensor(correct, dtype=torch.bool)  # N strings, (N,)


def _device_of(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device
