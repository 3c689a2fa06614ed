"""Text as indices: a character-level vocabulary with named special tokens, padding, and the split of a
sequence-to-sequence task (chapters 5 and 9)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PAD", "BOS", "EOS", "UNK", "Vocab", "pad_sequences", "DateSplit"]

# The special tokens come first in every Vocab, so their indices are the same on all of them.
PAD, BOS, EOS, UNK = 0, 1, 2, 3


class Vocab:
    """Token <-> index map with <pad>, <bos>, <eos>, <unk> (d2l's Vocab, character-level here), chapter 5.

    Shapes: none.
    """

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 1) -> None:
        counts = Counter(tokens)
        clash = [t for t in self.SPECIALS if t in counts]
        if clash:
            raise ValueError(f"tokens must not contain the reserved tokens {self.SPECIALS}, got {clash}")
        # Specials first, so <pad> is index 0 on every vocabulary; then the tokens in sorted order (reproducible).
        kept = sorted(t for t, c in counts.items() if c >= min_freq)
        self.idx_to_token: list[str] = [*self.SPECIALS, *kept]
        self.token_to_idx: dict[str, int] = {t: i for i, t in enumerate(self.idx_to_token)}

    def __len__(self) -> int:
        """Number of tokens, the four specials included."""
        return len(self.idx_to_token)

    def __getitem__(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Index of a token (<unk> if unknown), or the list of indices of a sequence of tokens."""
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, self.unk)
        return [self[t] for t in tokens]

    def to_tokens(self, indices: int | Sequence[int] | Tensor) -> str | list[str]:
        """Token of an index, or the tokens of a sequence of indices (d2l name)."""
        if isinstance(indices, Tensor):
            indices = indices.tolist()
        if isinstance(indices, int):
            if not 0 <= indices < len(self):
                raise ValueError(f"index must be in [0, {len(self)}), got {indices}")
            return self.idx_to_token[indices]
        return [self.to_tokens(i) for i in indices]

    def encode(self, text: str) -> list[int]:
        """Character indices of `text`, without <bos> or <eos>."""
        return [self.token_to_idx.get(ch, self.unk) for ch in text]

    def decode(self, indices: Sequence[int] | Tensor) -> str:
        """Text of a sequence of indices: stops at the first <eos>, skips <pad> and <bos>."""
        if isinstance(indices, Tensor):
            indices = indices.tolist()
        chars = []
        for i in indices:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                chars.append(self.to_tokens(int(i)))
        return "".join(chars)

    @property
    def pad(self) -> int:
        """Index of <pad>, the padding token (the same on every Vocab)."""
        return PAD

    @property
    def bos(self) -> int:
        """Index of <bos>, the beginning of sequence token (the same on every Vocab)."""
        return BOS

    @property
    def eos(self) -> int:
        """Index of <eos>, the end of sequence token (the same on every Vocab)."""
        return EOS

    @property
    def unk(self) -> int:
        """Index of <unk>, the unknown token token (the same on every Vocab)."""
        return UNK


def pad_sequences(seqs: Sequence[Sequence[int]], pad: int, length: int | None = None) -> tuple[Tensor, Tensor]:
    """Stack index lists into one tensor, padded on the right (d2l's truncate_pad, no truncation), chapter 5.

    Shapes: n lists -> (n, length) long, valid lengths (n,) long.
    """
    valid = [len(s) for s in seqs]
    longest = max(valid, default=0)
    length = longest if length is None else length
    if length < longest:
        raise ValueError(f"length must be at least the longest sequence ({longest}), got {length}")
    out = torch.full((len(seqs), length), pad, dtype=torch.long)  # (n, length)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.tensor(valid, dtype=torch.long)


@dataclass
class DateSplit:
    """One split of the dates task: the strings and their padded encodings, chapter 5.

    Shapes: X (n, T_src) with X_valid_len (n,); Y (n, T_tgt) with Y_valid_len (n,); both end with <eos>.
    """

    sources: list[str]  # n dates as written, e.g. "Wed, 3 Mar 2021"
    targets: list[str]  # n ISO dates, e.g. "2021-03-03"
    formats: list[str]  # n keys of DATE_FORMATS
    X: Tensor  # (n, T_src) source characters + <eos>, then <pad>
    X_valid_len: Tensor  # (n,) characters + 1 (the <eos>)
    Y: Tensor  # (n, T_tgt) target characters + <eos> (ISO dates are all 10 characters, so no <pad>)
    Y_valid_len: Tensor  # (n,)

    def __len__(self) -> int:
        """Number of examples n."""
        return len(self.sources)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Minibatches (X, X_valid_len, Y, Y_valid_len), each cut to its own longest source, chapter 5.

        Shapes: -> (b, T_b), (b,), (b, T_tgt), (b,) with b <= batch_size and T_b <= T_src.

        With shuffle, examples of similar length share a batch (sorted within random chunks of 20 batches), so
        little time goes into padding, and the batches come in random order.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator)  # (n,)
            chunk = 20 * batch_size
            pieces = []
            for start in range(0, n, chunk):
                idx = order[start : start + chunk]
                pieces.append(idx[torch.argsort(self.X_valid_len[idx], stable=True)])
            order = torch.cat(pieces)
            groups = list(torch.split(order, batch_size))
            groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
        else:
            groups = list(torch.split(torch.arange(n), batch_size))
        for idx in groups:
            t = int(self.X_valid_len[idx].max())
            yield self.X[idx, :t], self.X_valid_len[idx], self.Y[idx], self.Y_valid_len[idx]
