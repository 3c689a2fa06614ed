"""Synthetic sequence tasks, each built to need one ability of attention (ch. 6-9).

Each draws from its own generator, seeded by the caller: the global random state
stays untouched.
"""
from __future__ import annotations

import random
from typing import Optional

import torch
from torch import Tensor

from ..utils import check_non_negative_int, check_positive_int
from .text import DateSplit, Vocab, encode_texts

__all__ = [
    "make_two_neighbours_data", "previous_token_data", "make_rank_data",
    "make_sequence_task",
]


def make_two_neighbours_data(
    num_seqs: int = 256, seq_len: int = 6, content_size: int = 3, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Output both neighbours of every position: two places at once (chapter 6).

    Shapes: -> X (N, n, n + c), Y (N, n, 2c), with N = num_seqs, n = seq_len and
    c = content_size. Token i is [one-hot(i), c_i] with c_i ~ N(0, I); its target is
    [c_{i-1}, c_{i+1}], indices taken cyclically.
    """
    if seq_len < 3 or num_seqs < 1 or content_size < 1:
        raise ValueError(
            "need seq_len >= 3 (two distinct neighbours), num_seqs >= 1 and "
            f"content_size >= 1, got seq_len={seq_len}, num_seqs={num_seqs}, "
            f"content_size={content_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    content = torch.randn(num_seqs, seq_len, content_size, generator=gen)  # (N, n, c)
    # (N, n, n): token i carries one-hot(i).
    position = torch.eye(seq_len).expand(num_seqs, -1, -1)
    X = torch.cat([position, content], dim=-1)  # (N, n, n + c)
    # roll(1) puts c_{i-1} at position i, roll(-1) puts c_{i+1} there.
    Y = torch.cat([content.roll(1, dims=1), content.roll(-1, dims=1)], dim=-1)
    return X, Y  # (N, n, n + c), (N, n, 2c)


def previous_token_data(
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Random tokens and, at positions 1 .. n-1, the token one step earlier (ch. 7).

    Shapes: -> tokens (B, n) int64, targets (B, n - 1) = tokens[:, :-1], with
    B = batch_size and n = seq_len.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len),
                        ("vocab_size", vocab_size)):
        check_positive_int(name, value)
    if seq_len < 2:
        raise ValueError(
            f"seq_len must be >= 2 so that some position has a previous token, "
            f"got {seq_len}"
        )
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    return tokens, tokens[:, :-1]


def make_rank_data(
    num_samples: int, seq_len: int = 8, vocab_size: int = 16, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """The rank task: distinct random tokens, each labelled with its rank (chapter 8).

    Shapes: -> X (N, n) token ids in [0, vocab_size), Y (N, n) ranks in [0, n), with
    N = num_samples and n = seq_len. Y[b, i] counts the tokens of sequence b smaller
    than X[b, i]: where that token lands when the sequence is sorted.
    """
    _check_rank_sizes(num_samples, seq_len, vocab_size)
    gen = torch.Generator().manual_seed(seed)
    # The first n entries of a random permutation: n distinct tokens in random order.
    X = torch.rand(num_samples, vocab_size, generator=gen).argsort(dim=-1)[:, :seq_len]
    Y = (X[:, None, :] < X[:, :, None]).sum(dim=-1)  # (N, n, n) -> (N, n)
    return X, Y


def _check_rank_sizes(num_samples: int, seq_len: int, vocab_size: int) -> None:
    check_positive_int("num_samples", num_samples)
    check_positive_int("seq_len", seq_len)
    check_positive_int("vocab_size", vocab_size)
    if seq_len > vocab_size:
        raise ValueError(
            f"the tokens of a sequence are distinct, so seq_len <= vocab_size, "
            f"got {seq_len} > {vocab_size}"
        )


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
    """Random strings and their reversal (task="reverse") or sorted letters (chapter 9).

    Shapes: -> src_vocab, tgt_vocab, and train / valid / test splits in chapter 5's
    DateSplit layout (X (N, max_len + 1), Y (N, max_len + 1), each with <eos> and
    <pad>). The three splits share no string. Draws from its own
    random.Random(seed).
    """
    _check_task_args(task, n_train, n_valid, n_test, min_len, max_len, alphabet)
    total = n_train + n_valid + n_test
    sources = _distinct_strings(total, min_len, max_len, alphabet, random.Random(seed))
    targets = [s[::-1] if task == "reverse" else "".join(sorted(s)) for s in sources]
    vocab = Vocab(alphabet)  # every letter, so no test character is <unk>
    splits = []
    cut = (0, n_train, n_train + n_valid, total)
    for a, b in zip(cut, cut[1:]):
        src, tgt = sources[a:b], targets[a:b]
        X, X_valid_len = encode_texts(src, vocab, max_len + 1)
        Y, Y_valid_len = encode_texts(tgt, vocab, max_len + 1)
        splits.append(DateSplit(src, tgt, [task] * len(src), X, X_valid_len, Y,
                                Y_valid_len))
    return vocab, vocab, splits[0], splits[1], splits[2]


def _distinct_strings(
    total: int, min_len: int, max_len: int, alphabet: str, rng: random.Random
) -> list[str]:
    seen: set[str] = set()
    strings: list[str] = []
    # The loop only runs out before `total` distinct strings for impossible sizes.
    for _ in range(100 * total):
        if len(strings) == total:
            break
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
        if s not in seen:
            seen.add(s)
            strings.append(s)
    if len(strings) < total:
        raise ValueError(
            f"could not draw {total} distinct strings of length {min_len}..{max_len} "
            f"over {len(alphabet)} letters"
        )
    return strings


def _check_task_args(
    task: str, n_train: int, n_valid: int, n_test: int, min_len: int, max_len: int,
    alphabet: str,
) -> None:
    if task not in ("reverse", "sort"):
        raise ValueError(f"task must be 'reverse' or 'sort', got {task!r}")
    for name, value in (("n_train", n_train), ("min_len", min_len),
                        ("max_len", max_len)):
        check_positive_int(name, value)
    check_non_negative_int("n_valid", n_valid)
    check_non_negative_int("n_test", n_test)
    if min_len > max_len:
        raise ValueError(
            f"min_len must be <= max_len, got min_len={min_len}, max_len={max_len}"
        )
    if len(set(alphabet)) != len(alphabet) or len(alphabet) < 2:
        raise ValueError(
            f"alphabet must hold at least 2 distinct characters, got {alphabet!r}"
        )
