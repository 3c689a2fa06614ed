"""Text as indices: a character-level vocabulary with named special tokens, padding,
and the split of a sequence-to-sequence task (chapters 5 and 9)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ..utils import check_positive_int

__all__ = [
    "PAD", "BOS", "EOS", "UNK", "Vocab", "pad_sequences", "encode_texts", "DateSplit",
]

# The special tokens come first in every Vocab, so their indices are the same on all.
PAD, BOS, EOS, UNK = 0, 1, 2, 3


class Vocab:
    """Token <-> index map with <pad>, <bos>, <eos>, <unk> (chapter 5; d2l's Vocab).

    Character-level here: a token is one character. The special tokens have the same
    indices on every Vocab (PAD, BOS, EOS, UNK).
    """

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 1) -> None:
        counts = Counter(tokens)
        clash = [t for t in self.SPECIALS if t in counts]
        if clash:
            raise ValueError(
                f"tokens must not contain the reserved tokens {self.SPECIALS}, "
                f"got {clash}"
            )
        # Specials first, so <pad> is index 0 on every vocabulary; then the tokens in
        # sorted order (reproducible).
        kept = sorted(t for t, c in counts.items() if c >= min_freq)
        self.idx_to_token: list[str] = [*self.SPECIALS, *kept]
        self.token_to_idx: dict[str, int] = {
            t: i for i, t in enumerate(self.idx_to_token)
        }

    def __len__(self) -> int:
        """Number of tokens, the four specials included."""
        return len(self.idx_to_token)

    def __getitem__(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Index of a token (<unk> if unknown), or the indices of a token sequence."""
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
        """The text of indices: stops at the first <eos>, skips <pad> and <bos>.

        Shapes: indices (n,) -> a string.
        """
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
        """Index of <pad>, the padding token (PAD on every Vocab)."""
        return PAD

    @property
    def bos(self) -> int:
        """Index of <bos>, the beginning-of-sequence token (BOS on every Vocab)."""
        return BOS

    @property
    def eos(self) -> int:
        """Index of <eos>, the end-of-sequence token (EOS on every Vocab)."""
        return EOS

    @property
    def unk(self) -> int:
        """Index of <unk>, the unknown token (UNK on every Vocab)."""
        return UNK


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad: int, length: int | None = None
) -> tuple[Tensor, Tensor]:
    """Stack index lists into one tensor, padded on the right (chapter 5).

    Shapes: N lists -> (N, length) long, valid lengths (N,) long. d2l's truncate_pad,
    without the truncation.
    """
    valid = [len(s) for s in seqs]
    longest = max(valid, default=0)
    length = longest if length is None else length
    if length < longest:
        raise ValueError(
            f"length must be at least the longest sequence ({longest}), got {length}"
        )
    out = torch.full((len(seqs), length), pad, dtype=torch.long)  # (N, length)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.tensor(valid, dtype=torch.long)


def encode_texts(
    texts: Sequence[str], vocab: Vocab, length: int | None = None
) -> tuple[Tensor, Tensor]:
    """Each text's characters and <eos>, padded into one tensor (chapters 5 and 9).

    Shapes: N strings -> (N, length) long, valid lengths (N,) long; length is the
    longest text plus its <eos> unless given.
    """
    return pad_sequences([vocab.encode(t) + [vocab.eos] for t in texts], vocab.pad,
                         length)


@dataclass
class DateSplit:
    """One split of a sequence-to-sequence task: strings and their padded encodings.

    Shapes: X (N, T_src) with X_valid_len (N,); Y (N, T_tgt) with Y_valid_len (N,);
    both end with <eos>. Chapter 5's dates task named it; chapter 9's synthetic tasks
    use the same layout.
    """

    sources: list[str]  # N dates as written, e.g. "Wed, 3 Mar 2021"
    targets: list[str]  # N ISO dates, e.g. "2021-03-03"
    formats: list[str]  # N keys of DATE_FORMATS
    X: Tensor  # (N, T_src) source characters + <eos>, then <pad>
    X_valid_len: Tensor  # (N,) characters + 1 (the <eos>)
    # (N, T_tgt) target characters + <eos> (ISO dates all have 10, so no <pad>)
    Y: Tensor
    Y_valid_len: Tensor  # (N,)

    def __len__(self) -> int:
        """Number of examples N."""
        return len(self.sources)

    def first(self, n: int) -> DateSplit:
        """The split of the first n examples (all of them if there are fewer)."""
        return DateSplit(*(getattr(self, f.name)[:n] for f in fields(self)))

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Minibatches (X, X_valid_len, Y, Y_valid_len), cut to their longest source.

        Shapes: -> (B, T_src), (B,), (B, T_tgt), (B,) with B <= batch_size, and T_src
        the batch's longest source. With shuffle, examples of similar length share a
        batch (sorted within random chunks of 20 batches), so little time goes into
        padding, and the batches come in random order.
        """
        check_positive_int("batch_size", batch_size)
        N = len(self)
        if shuffle:
            groups = self._length_sorted_groups(batch_size, generator)
        else:
            groups = list(torch.split(torch.arange(N), batch_size))
        for idx in groups:
            t = int(self.X_valid_len[idx].max())
            yield (self.X[idx, :t], self.X_valid_len[idx], self.Y[idx],
                   self.Y_valid_len[idx])

    def _length_sorted_groups(
        self, batch_size: int, generator: torch.Generator | None
    ) -> list[Tensor]:
        order = torch.randperm(len(self), generator=generator)  # (N,)
        chunk = 20 * batch_size
        pieces = []
        for start in range(0, len(self), chunk):
            idx = order[start : start + chunk]
            pieces.append(idx[torch.argsort(self.X_valid_len[idx], stable=True)])
        groups = list(torch.split(torch.cat(pieces), batch_size))
        shuffled = torch.randperm(len(groups), generator=generator).tolist()
        return [groups[i] for i in shuffled]
