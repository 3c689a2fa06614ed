"""Chapter 5's offline task: dates in many formats, to be normalised to ISO form.

Everything is generated from a seed: random calendar dates, each written in one of the
formats of ``DATE_FORMATS``, split into training / validation / test sets with no date
in common, and encoded as padded character indices with their valid lengths (a
character-level ``Vocab``). The target is the ISO form YYYY-MM-DD.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from ..utils import check_non_negative_int
from .text import DateSplit, Vocab, encode_texts

__all__ = [
    "DATE_FORMATS",
    "FIRST_DATE",
    "LAST_DATE",
    "format_date",
    "DateData",
    "make_date_data",
]

# The calendar covered. Two-digit years are read with this century window: 50-99 ->
# 1950-1999, 00-49 -> 2000-2049, so "03/03/21" has exactly one reading.
FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2049, 12, 31)

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]
_WEEKDAYS = [
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
]
_UNITS = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
    "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
    "sixteenth", "seventeenth", "eighteenth", "nineteenth",
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
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _parts(d: dt.date) -> dict[str, str]:
    month, weekday = _MONTHS[d.month - 1], _WEEKDAYS[d.weekday()]
    return {
        "Y": f"{d.year:04d}", "y": f"{d.year % 100:02d}", "m": f"{d.month:02d}",
        "n": str(d.month), "d": f"{d.day:02d}", "j": str(d.day), "B": month,
        "b": month[:3], "A": weekday, "a": weekday[:3],
        "th": _ordinal_suffix(d.day), "word": _ordinal_word(d.day),
    }


# Each format writes a date one way. Day-first wherever day and month are both
# numbers, so none is ambiguous.
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
    # Wednesday, March 3, 2021
    "weekday_long": lambda d: "{A}, {B} {j}, {Y}".format(**_parts(d)),
    # third of March 2021
    "ordinal_words": lambda d: "{word} of {B} {Y}".format(**_parts(d)),
    # Wednesday the third of March 2021
    "weekday_words": lambda d: "{A} the {word} of {B} {Y}".format(**_parts(d)),
}


def format_date(date: dt.date, fmt: str) -> str:
    """Write `date` in the format named `fmt` (a key of DATE_FORMATS), chapter 5."""
    if fmt not in DATE_FORMATS:
        raise ValueError(f"fmt must be one of {sorted(DATE_FORMATS)}, got {fmt!r}")
    if not FIRST_DATE <= date <= LAST_DATE:
        raise ValueError(
            f"date must lie between {FIRST_DATE} and {LAST_DATE} (two-digit years), "
            f"got {date}"
        )
    return DATE_FORMATS[fmt](date)


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
        """Encode new date strings as the splits are (characters + <eos>, padded).

        Shapes: N strings -> (N, T_src) long, (N,) long.
        """
        return encode_texts(sources, self.src_vocab)


def _make_split(
    dates: list[dt.date], fmts: list[str], src_vocab: Vocab, tgt_vocab: Vocab
) -> DateSplit:
    sources = [format_date(d, f) for d, f in zip(dates, fmts)]
    targets = [d.isoformat() for d in dates]
    X, X_valid_len = encode_texts(sources, src_vocab)
    Y, Y_valid_len = encode_texts(targets, tgt_vocab)
    return DateSplit(sources, targets, list(fmts), X, X_valid_len, Y, Y_valid_len)


def make_date_data(
    n_train: int = 4000,
    n_valid: int = 500,
    n_test: int = 2000,
    *,
    seed: int = 0,
    formats: Sequence[str] | None = None,
) -> DateData:
    """The dates task from a seed: random dates, each in a random format (chapter 5).

    Shapes: -> DateData with splits of n_train, n_valid, n_test examples.

    The dates are drawn without replacement from 1950-01-01 .. 2049-12-31, so the
    splits share no date; the vocabularies are built from the training split (a
    character never seen in training becomes <unk>). Draws from its own
    random.Random(seed): the global random state stays untouched.
    """
    formats = _checked_formats(n_train, n_valid, n_test, formats)
    n_days = (LAST_DATE - FIRST_DATE).days + 1
    total = n_train + n_valid + n_test
    rng = random.Random(seed)
    offsets = rng.sample(range(n_days), total)
    dates = [FIRST_DATE + dt.timedelta(days=o) for o in offsets]
    fmts = [rng.choice(formats) for _ in range(total)]

    train_dates, train_fmts = dates[:n_train], fmts[:n_train]
    src_vocab = Vocab(
        ch for d, f in zip(train_dates, train_fmts) for ch in format_date(d, f)
    )
    tgt_vocab = Vocab(ch for d in train_dates for ch in d.isoformat())
    cut = [0, n_train, n_train + n_valid, total]
    train, valid, test = (
        _make_split(dates[a:b], fmts[a:b], src_vocab, tgt_vocab)
        for a, b in zip(cut, cut[1:])
    )
    return DateData(src_vocab, tgt_vocab, train, valid, test)


def _checked_formats(
    n_train: int, n_valid: int, n_test: int, formats: Sequence[str] | None
) -> list[str]:
    """The formats to draw from, once the sizes and the formats are checked."""
    for name, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        check_non_negative_int(name, value)
    if n_train < 1:
        raise ValueError(
            f"n_train must be >= 1 to build the vocabularies, got {n_train}"
        )
    formats = list(DATE_FORMATS) if formats is None else list(formats)
    unknown = [f for f in formats if f not in DATE_FORMATS]
    if not formats or unknown:
        raise ValueError(
            "formats must be a non-empty list of keys of DATE_FORMATS, "
            f"got unknown {unknown}"
        )
    n_days = (LAST_DATE - FIRST_DATE).days + 1
    total = n_train + n_valid + n_test
    if total > n_days:
        raise ValueError(f"at most {n_days} examples fit (one per date), got {total}")
    return formats
