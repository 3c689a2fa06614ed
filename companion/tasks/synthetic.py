"""Synthetic sequence tasks, each built to need one ability of attention (chapters 6-9)."""
from __future__ import annotations

import random
from typing import Optional

import torch
from torch import Tensor

from ..utils import check_positive_int
from .text import DateSplit, Vocab, pad_sequences

__all__ = ["make_two_neighbours_data", "previous_token_data", "make_rank_data", "make_sequence_task"]


def make_two_neighbours_data(
    num_seqs: int = 256, seq_len: int = 6, content_size: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A task that needs two places at once: output both neighbours of every position (chapter 6).

    Shapes: -> X (num_seqs, seq_len, seq_len + content_size), Y (num_seqs, seq_len, 2 * content_size).
    Token i is [one-hot(i), c_i] with c_i ~ N(0, I); its target is [c_{i-1}, c_{i+1}],
    indices taken cyclically. Uses its own generator (the global RNG is untouched).
    """
    if seq_len < 3 or num_seqs < 1 or content_size < 1:
        raise ValueError(
            f"need seq_len >= 3 (two distinct neighbours), num_seqs >= 1 and content_size >= 1, "
            f"got seq_len={seq_len}, num_seqs={num_seqs}, content_size={content_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    content = torch.randn(num_seqs, seq_len, content_size, generator=gen)  # (N, n, c)
    position = torch.eye(seq_len).expand(num_seqs, -1, -1)  # (N, n, n): token i carries one-hot(i)
    X = torch.cat([position, content], dim=-1)  # (N, n, n + c)
    # roll(1) puts c_{i-1} at position i, roll(-1) puts c_{i+1} there.
    Y = torch.cat([content.roll(1, dims=1), content.roll(-1, dims=1)], dim=-1)  # (N, n, 2c)
    return X, Y


def previous_token_data(
    batch_size: int, seq_len: int, vocab_size: int, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """Random token sequences and, for positions 1 .. n-1, the token one step earlier (chapter 7 experiment).

    Shapes: -> tokens (batch_size, seq_len) int64, targets (batch_size, seq_len - 1) = tokens[:, :-1].
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("vocab_size", vocab_size)):
        check_positive_int(name, value)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 so that some position has a previous token, got {seq_len}")
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    return tokens, tokens[:, :-1]


def make_rank_data(
    num_samples: int, seq_len: int = 8, vocab_size: int = 16, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """The rank task: distinct random tokens, label = how many tokens of the sequence are smaller (chapter 8).

    Shapes: -> X (num_samples, seq_len) token ids in [0, vocab_size), Y (num_samples, seq_len) ranks in
    [0, seq_len). Y[b, i] is where token X[b, i] lands when the sequence is sorted.
    """
    check_positive_int("num_samples", num_samples)
    check_positive_int("seq_len", seq_len)
    check_positive_int("vocab_size", vocab_size)
    if seq_len > vocab_size:
        raise ValueError(
            f"the tokens of a sequence are distinct, so seq_len <= vocab_size, got {seq_len} > {vocab_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    # The first seq_len entries of a random permutation: seq_len distinct tokens in random order.
    X = torch.rand(num_samples, vocab_size, generator=gen).argsort(dim=-1)[:, :seq_len]  # (N, T)
    Y = (X[:, None, :] < X[:, :, None]).sum(dim=-1)  # (N, T, T) -> (N, T): count of smaller tokens
    return X, Y


def make_sequence_task(
    n_train: int = 4000,
    n_valid: int = 500,
    n_test: int = 1000,
    *,
    task: str = "reverse",
    min_len: int = 4,
    max_len: int = 16,
    alphabet: str = "abcdefghijklmnopqrstuvwxyz",
    seed: int = 0,
) -> tuple[Vocab, Vocab, DateSplit, DateSplit, DateSplit]:
    """Random letter strings and their reversal (task="reverse") or sorted letters ("sort"), chapter 9.

    Shapes: -> src_vocab, tgt_vocab, and train / valid / test splits in chapter 5's DateSplit layout
    (X (n, max_len + 1), Y (n, max_len + 1), each with <eos> and <pad>). The three splits share no string.
    Uses its own random.Random(seed): the global RNGs are untouched.
    """
    if task not in ("reverse", "sort"):
        raise ValueError(f"task must be 'reverse' or 'sort', got {task!r}")
    for name, value in (("n_train", n_train), ("min_len", min_len), ("max_len", max_len)):
        check_positive_int(name, value)
    for name, value in (("n_valid", n_valid), ("n_test", n_test)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if min_len > max_len:
        raise ValueError(f"min_len must be <= max_len, got min_len={min_len}, max_len={max_len}")
    if len(set(alphabet)) != len(alphabet) or len(alphabet) < 2:
        raise ValueError(f"alphabet must hold at least 2 distinct characters, got {alphabet!r}")
    rng = random.Random(seed)
    total = n_train + n_valid + n_test
    seen: set[str] = set()
    sources: list[str] = []
    for _ in range(100 * total):  # distinct strings; the loop only ends early for impossible sizes
        if len(sources) == total:
            break
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
        if s not in seen:
            seen.add(s)
            sources.append(s)
    if len(sources) < total:
        raise ValueError(f"could not draw {total} distinct strings of length {min_len}..{max_len} "
                         f"over {len(alphabet)} letters")
    targets = [s[::-1] if task == "reverse" else "".join(sorted(s)) for s in sources]
    vocab = Vocab(alphabet)  # every letter, so no test character is <unk>
    splits = []
    for a, b in ((0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, total)):
        src, tgt = sources[a:b], targets[a:b]
        X, X_valid_len = pad_sequences([vocab.encode(s) + [vocab.eos] for s in src], vocab.pad, max_len + 1)
        Y, Y_valid_len = pad_sequences([vocab.encode(t) + [vocab.eos] for t in tgt], vocab.pad, max_len + 1)
        splits.append(DateSplit(src, tgt, [task] * len(src), X, X_valid_len, Y, Y_valid_len))
    return vocab, vocab, splits[0], splits[1], splits[2]
