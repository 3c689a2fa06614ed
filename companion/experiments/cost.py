"""Chapter 9's measurements of cost: decoding time with and without the KV cache, and
the arithmetic of one training step per token."""
from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..decoding import transformer_greedy_decode
from ..measure import _synchronize
from ..seq2seq import sequence_loss, teacher_forcing_inputs
from ..tasks.text import BOS, EOS, DateSplit, Vocab
from ..transformer_seq2seq import TransformerEncoderDecoder
from ..utils import check_positive_int, one_thread_on_cpu

__all__ = ["time_decoding", "training_flops_per_token"]


def time_decoding(
    net: TransformerEncoderDecoder,
    X: Tensor,
    X_valid_len: Tensor,
    steps: Sequence[int],
    *,
    repeats: int = 3,
) -> dict[bool, list[float]]:
    """Best seconds of greedy decoding of m steps, with and without the cache (ch. 9).

    Shapes: X (B, T_src), X_valid_len (B,) -> {use_cache: [seconds for each m in
    steps]}. Decoding never stops early at <eos>. Each measurement is the best of
    `repeats` runs, and the runs are interleaved (every m and both modes once, then
    again), so a burst of other work on the machine spoils one run, not all of them.
    """
    steps = _checked_steps(steps, repeats)
    device = next(net.parameters()).device
    best = {use_cache: [math.inf] * len(steps) for use_cache in (False, True)}
    with one_thread_on_cpu(device):
        for _ in range(repeats):
            for i, m in enumerate(steps):
                for use_cache in (False, True):
                    _synchronize(device)
                    start = time.perf_counter()
                    # Every Vocab has the same <bos> and <eos>; <eos> ends nothing here.
                    transformer_greedy_decode(net, X, X_valid_len, BOS, EOS, m,
                                              use_cache=use_cache, stop_at_eos=False)
                    _synchronize(device)
                    elapsed = time.perf_counter() - start
                    best[use_cache][i] = min(best[use_cache][i], elapsed)
    return best


def _checked_steps(steps: Sequence[int], repeats: int) -> list[int]:
    check_positive_int("repeats", repeats)
    steps = list(steps)
    if not steps:
        raise ValueError(
            "steps must hold at least one number of steps, got an empty sequence"
        )
    for m in steps:
        check_positive_int("each number of steps", m)
    return steps


def training_flops_per_token(
    net: nn.Module,
    data: DateSplit,
    tgt_vocab: Vocab,
    *,
    num_examples: int = 512,
    batch_size: int = 64,
) -> float:
    """Floating-point operations of a training step, per real token (chapter 9).

    Shapes: data.X (N, T_src), data.Y (N, T_tgt) -> a float. Counts, with torch's
    FlopCounterMode, the matrix products of the teacher-forced loss and its gradient
    (forward and backward) on the first num_examples training examples, batched as
    in training (padding included, as training computes it), and divides by their
    source and target tokens. The parameters' gradients are left as they were.
    """
    from torch.utils.flop_counter import FlopCounterMode

    check_positive_int("num_examples", num_examples)
    check_positive_int("batch_size", batch_size)
    device = next(net.parameters()).device
    saved = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    tokens = 0
    subset = data.first(num_examples)
    with FlopCounterMode(display=False) as counter:
        for X, X_valid_len, Y, Y_valid_len in subset.batches(batch_size):
            # (B, T_src), (B,), (B, T_tgt)
            X, X_valid_len, Y = X.to(device), X_valid_len.to(device), Y.to(device)
            dec_X = teacher_forcing_inputs(Y, tgt_vocab.bos)  # (B, T_tgt)
            sequence_loss(net(X, dec_X, X_valid_len), Y, tgt_vocab.pad).backward()
            tokens += int(X_valid_len.sum()) + int(Y_valid_len.sum())
    for p, g in zip(net.parameters(), saved):
        p.grad = g
    return counter.get_total_flops() / tokens
