"""Chapter 5's offline task: dates written in many formats, to be normalised to ISO form (YYYY-MM-DD).

Everything is generated from a seed: random calendar dates, each written in one of the formats of
``DATE_FORMATS``, split into training / validation / test sets with no date in common, and encoded as padded
character indices with their valid lengths (a character-level ``Vocab``).
"""
from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DATE_FORMATS",
    "FIRST_DATE",
    "LAST_DATE",
    "format_date",
    "Vocab",
    "pad_sequences",
    "DateSplit",
    "DateData",
    "make_date_data",
]

# The calendar covered. Two-digit years are read with this century window: 50-99 -> 1950-1999, 00-49 -> 2000-2049,
# so "03/03/21" has exactly one reading.
FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2049, 12, 31)

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_UNITS = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth",
    "nineteenth",
]


def _ordinal_word(day: int) -> str:
    """1 -> "first", 23 -> "twenty-third", 30 -> "thirtieth"."""
    if day < 20:
        return _UNITS[day - 1]
    tens, unit = divmod(day, 10)
    stem = {2: "twent", 3: "thirt"}[tens]
    return f"{stem}ieth" if unit == 0 else f"{stem}y-{_UNITS[unit - 1]}"


def _ordinal_suffix(day: int) -> str:
    """1 -> "1st", 12 -> "12th", 22 -> "22nd"."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _parts(d: dt.date) -> dict[str, str]:
    month, weekday = _MONTHS[d.month - 1], _WEEKDAYS[d.weekday()]
    return {
        "Y": f"{d.year:04d}", "y": f"{d.year % 100:02d}", "m": f"{d.month:02d}", "n": str(d.month),
        "d": f"{d.day:02d}", "j": str(d.day), "B": month, "b": month[:3], "A": weekday, "a": weekday[:3],
        "th": _ordinal_suffix(d.day), "word": _ordinal_word(d.day),
    }


# Each format writes a date one way. Day-first wherever day and month are both numbers, so none is ambiguous.
DATE_FORMATS: dict[str, Callable[[dt.date], str]] = {
    "compact": lambda d: "{Y}{m}{d}".format(**_parts(d)),  # 20210303
    "dotted_iso": lambda d: "{Y}.{m}.{d}".format(**_parts(d)),  # 2021.03.03
    "slash_short": lambda d: "{d}/{m}/{y}".format(**_parts(d)),  # 03/03/21
    "dash_dmy": lambda d: "{d}-{m}-{Y}".format(**_parts(d)),  # 03-03-2021
    "dotted_dmy": lambda d: "{j}.{n}.{Y}".format(**_parts(d)),  # 3.3.2021
    "lower_short": lambda d: "{j} {B} {y}".format(**_parts(d)).lower(),  # 3 march 21
    "upper_abbr": lambda d: "{d} {b} {Y}".format(**_parts(d)).upper(),  # 03 MAR 2021
    "month_first": lambda d: "{B} {j}, {Y}".format(**_parts(d)),  # March 3, 2021
    "abbr_suffix": lambda d: "{b} {th}, {Y}".format(**_parts(d)),  # Mar 3rd, 2021
    "weekday_abbr": lambda d: "{a}, {j} {b} {Y}".format(**_parts(d)),  # Wed, 3 Mar 2021
    "weekday_long": lambda d: "{A}, {B} {j}, {Y}".format(**_parts(d)),  # Wednesday, March 3, 2021
    "ordinal_words": lambda d: "{word} of {B} {Y}".format(**_parts(d)),  # third of March 2021
    "weekday_words": lambda d: "{A} the {word} of {B} {Y}".format(**_parts(d)),  # Wednesday the third of March 2021
}


def format_date(date: dt.date, fmt: str) -> str:
    """Write `date` in the format named `fmt` (a key of DATE_FORMATS), chapter 5.

    Shapes: none.
    """
    if fmt not in DATE_FORMATS:
        raise ValueError(f"fmt must be one of {sorted(DATE_FORMATS)}, got {fmt!r}")
    if not FIRST_DATE <= date <= LAST_DATE:
        raise ValueError(f"date must lie between {FIRST_DATE} and {LAST_DATE} (two-digit years), got {date}")
    return DATE_FORMATS[fmt](date)


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
        return 0

    @property
    def bos(self) -> int:
        """Index of <bos>, the beginning of sequence token (the same on every Vocab)."""
        return 1

    @property
    def eos(self) -> int:
        """Index of <eos>, the end of sequence token (the same on every Vocab)."""
        return 2

    @property
    def unk(self) -> int:
        """Index of <unk>, the unknown token token (the same on every Vocab)."""
        return 3


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


@dataclass
class DateData:
    """The dates task: vocabularies and three splits with no date in common, chapter 5.

    Shapes: see DateSplit.
    """

    src_vocab: Vocab
    tgt_vocab: Vocab
    train: DateSplit
    valid: DateSplit
    test: DateSplit

    def encode_sources(self, sources: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Encode new date strings as the splits are encoded (characters + <eos>, padded).

        Shapes: n strings -> (n, T) long, (n,) long.
        """
        v = self.src_vocab
        return pad_sequences([v.encode(s) + [v.eos] for s in sources], v.pad)


def _make_split(dates: list[dt.date], fmts: list[str], src_vocab: Vocab, tgt_vocab: Vocab) -> DateSplit:
    sources = [format_date(d, f) for d, f in zip(dates, fmts)]
    targets = [d.isoformat() for d in dates]
    X, X_valid_len = pad_sequences([src_vocab.encode(s) + [src_vocab.eos] for s in sources], src_vocab.pad)
    Y, Y_valid_len = pad_sequences([tgt_vocab.encode(t) + [tgt_vocab.eos] for t in targets], tgt_vocab.pad)
    return DateSplit(sources, targets, list(fmts), X, X_valid_len, Y, Y_valid_len)


def make_date_data(
    n_train: int = 4000,
    n_valid: int = 500,
    n_test: int = 2000,
    *,
    seed: int = 0,
    formats: Sequence[str] | None = None,
) -> DateData:
    """Generate the dates task from a seed: random dates, each in a random format, chapter 5.

    Shapes: -> DateData with splits of n_train, n_valid, n_test examples.

    The dates are drawn without replacement from 1950-01-01 .. 2049-12-31, so the splits share no date; the
    vocabularies are built from the training split (a character never seen in training becomes <unk>).
    Uses its own random.Random(seed): the global RNGs are untouched.
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1 to build the vocabularies, got {n_train}")
    formats = list(DATE_FORMATS) if formats is None else list(formats)
    unknown = [f for f in formats if f not in DATE_FORMATS]
    if not formats or unknown:
        raise ValueError(f"formats must be a non-empty list of keys of DATE_FORMATS, got unknown {unknown}")
    n_days = (LAST_DATE - FIRST_DATE).days + 1
    total = n_train + n_valid + n_test
    if total > n_days:
        raise ValueError(f"at most {n_days} examples fit (one per date), got {total}")
    rng = random.Random(seed)
    offsets = rng.sample(range(n_days), total)
    dates = [FIRST_DATE + dt.timedelta(days=o) for o in offsets]
    fmts = [rng.choice(formats) for _ in range(total)]

    train_dates, train_fmts = dates[:n_train], fmts[:n_train]
    src_vocab = Vocab(ch for d, f in zip(train_dates, train_fmts) for ch in format_date(d, f))
    tgt_vocab = Vocab(ch for d in train_dates for ch in d.isoformat())
    cut = [0, n_train, n_train + n_valid, total]
    train, valid, test = (
        _make_split(dates[a:b], fmts[a:b], src_vocab, tgt_vocab) for a, b in zip(cut, cut[1:])
    )
    return DateData(src_vocab, tgt_vocab, train, valid, test)
