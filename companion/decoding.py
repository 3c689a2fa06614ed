"""Greedy decoding of sequence-to-sequence models, and evaluation by exact match (chapters 5 and 9)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .seq2seq import EncoderDecoder
from .tasks.text import DateSplit, Vocab
from .utils import check_positive_int, one_thread_on_cpu

if TYPE_CHECKING:
    from .transformer_seq2seq import TransformerEncoderDecoder

__all__ = ["greedy_decode", "transformer_greedy_decode", "predict_seq2seq", "evaluate_seq2seq"]


@torch.no_grad()
def greedy_decode(
    net: EncoderDecoder, X: Tensor, X_valid_len: Tensor, bos: int, eos: int, num_steps: int, pad: int = 0
) -> tuple[Tensor, Tensor | None]:
    """Greedy decoding of a batch: feed back the most likely token until <eos>, chapter 5.

    Shapes: X (B, T_src), X_valid_len (B,) -> tokens (B, num_steps) long (<eos>, then <pad> after it),
    attention weights (B, num_steps, T_src) or None for a decoder without attention.
    """
    net.eval()
    enc_all_outputs = net.encoder(X, X_valid_len)  # (B, T_src, H), (L, B, H)
    state = net.decoder.init_state(enc_all_outputs, X_valid_len)
    dec_X = torch.full((X.shape[0], 1), bos, dtype=torch.long, device=X.device)  # (B, 1)
    finished = torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)  # (B,)
    tokens, weights = [], []
    for _ in range(num_steps):
        logits, state = net.decoder(dec_X, state)  # (B, 1, V)
        dec_X = logits.argmax(dim=-1)  # (B, 1): the prediction is the next input
        # A sequence that has produced <eos> is done: what the decoder says afterwards is padding.
        tokens.append(dec_X[:, 0].masked_fill(finished, pad))  # (B,)
        if hasattr(net.decoder, "attention_weights"):
            weights.append(net.decoder.attention_weights)  # (B, 1, T_src)
        finished |= dec_X[:, 0] == eos
        if finished.all():
            break
    out = torch.stack(tokens, dim=1)  # (B, steps taken)
    out = F.pad(out, (0, num_steps - out.shape[1]), value=pad)  # (B, num_steps)
    if not weights:
        return out, None
    attn = torch.cat(weights, dim=1)  # (B, steps taken, T_src)
    return out, F.pad(attn, (0, 0, 0, num_steps - attn.shape[1]))  # (B, num_steps, T_src)


def predict_seq2seq(
    net: EncoderDecoder,
    sources: Sequence[str],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    num_steps: int,
    device: torch.device | str | None = None,
) -> tuple[list[str], Tensor | None]:
    """Translate date strings with greedy decoding (d2l's predict_seq2seq, batched), chapter 5.

    Shapes: n strings -> n strings, attention weights (n, num_steps, T_src) or None.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    seqs = [src_vocab.encode(s) + [src_vocab.eos] for s in sources]
    lens = torch.tensor([len(s) for s in seqs])  # (n,)
    X = torch.full((len(seqs), int(lens.max())), src_vocab.pad, dtype=torch.long)  # (n, T_src)
    for i, s in enumerate(seqs):
        X[i, : len(s)] = torch.tensor(s)
    tokens, weights = greedy_decode(
        net, X.to(device), lens.to(device), tgt_vocab.bos, tgt_vocab.eos, num_steps, tgt_vocab.pad
    )
    return [tgt_vocab.decode(row) for row in tokens.cpu()], None if weights is None else weights.cpu()


@torch.no_grad()
def evaluate_seq2seq(
    net: EncoderDecoder,
    data: DateSplit,
    tgt_vocab: Vocab,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> tuple[list[str], Tensor]:
    """Greedy predictions for a whole split and which of them match the target exactly, chapter 5.

    Shapes: data of n examples -> n strings, correct (n,) bool.
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    num_steps = data.Y.shape[1]
    predictions: list[str] = []
    with one_thread_on_cpu(device):
        for X, X_valid_len, _, _ in data.batches(batch_size):
            tokens, _ = greedy_decode(
                net, X.to(device), X_valid_len.to(device), tgt_vocab.bos, tgt_vocab.eos, num_steps, tgt_vocab.pad
            )
            predictions += [tgt_vocab.decode(row) for row in tokens.cpu()]  # (b, num_steps) -> b strings
    correct = torch.tensor([p == t for p, t in zip(predictions, data.targets)], dtype=torch.bool)  # (n,)
    return predictions, correct


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
    """Greedy decoding with or without the KV cache; both give the same tokens (chapter 9, eq. greedy).

    Shapes: X (batch, T_src), X_valid_len (batch,) -> tokens (batch, num_steps) long, <pad> after each <eos>.
    Without the cache every step runs the decoder over the whole prefix and keeps the last position's logits;
    with it every step feeds only the newest token. stop_at_eos=False always runs num_steps steps (for timing).
    """
    check_positive_int("num_steps", num_steps)
    net.eval()
    enc_outputs = net.encoder(X, X_valid_len)  # (batch, T_src, d): computed once in both modes
    state = net.decoder.init_state(enc_outputs, X_valid_len, use_cache=use_cache)
    batch = X.shape[0]
    prefix = torch.full((batch, 1), bos, dtype=torch.long, device=X.device)  # (batch, 1): <bos>
    finished = torch.zeros(batch, dtype=torch.bool, device=X.device)
    tokens: list[Tensor] = []
    for _ in range(num_steps):
        # With the cache, only the newest token goes in; without, the whole prefix is decoded again.
        step_input = prefix[:, -1:] if use_cache else prefix
        logits, state = net.decoder(step_input, state)  # (batch, 1 or t, V)
        next_token = logits[:, -1].argmax(dim=-1)  # (batch,)
        tokens.append(next_token.masked_fill(finished, pad))
        finished |= next_token == eos
        prefix = torch.cat([prefix, next_token[:, None]], dim=1)  # (batch, t + 1)
        if stop_at_eos and finished.all():
            break
    out = torch.stack(tokens, dim=1)  # (batch, steps taken)
    return nn.functional.pad(out, (0, num_steps - out.shape[1]), value=pad)  # (batch, num_steps)
