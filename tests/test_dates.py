"""Tests for companion.dates: the generated dates task of chapter 5."""
from __future__ import annotations

import datetime as dt
import random
import re

import pytest
import torch

from companion.tasks.dates import DATE_FORMATS, FIRST_DATE, LAST_DATE, DateData, format_date, make_date_data
from companion.tasks.text import Vocab

# Written out independently of the module, so a wrong word there is caught here.
ORDINALS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth twenty-first twenty-second twenty-third "
    "twenty-fourth twenty-fifth twenty-sixth twenty-seventh twenty-eighth twenty-ninth thirtieth thirty-first"
).split()
WORD_TO_DAY = {w: i + 1 for i, w in enumerate(ORDINALS)}


def century(two_digits: int) -> int:
    """The course's window for two-digit years: 50-99 -> 19xx, 00-49 -> 20xx."""
    return 1900 + two_digits if two_digits >= 50 else 2000 + two_digits


def parse(text: str, fmt: str) -> dt.date:
    """Read a generated date back with datetime (and the ordinal table above), one rule per format."""
    strptime = dt.datetime.strptime
    if fmt == "compact":
        return strptime(text, "%Y%m%d").date()
    if fmt == "dotted_iso":
        return strptime(text, "%Y.%m.%d").date()
    if fmt in ("slash_short", "lower_short"):
        head, yy = text[:-2], int(text[-2:])
        pattern = "%d/%m/" if fmt == "slash_short" else "%d %B "
        day_month = strptime(head + "2000", pattern + "%Y").date()  # 2000 is a leap year: 29 Feb parses
        return day_month.replace(year=century(yy))
    if fmt == "dash_dmy":
        return strptime(text, "%d-%m-%Y").date()
    if fmt == "dotted_dmy":
        return strptime(text, "%d.%m.%Y").date()
    if fmt == "upper_abbr":
        return strptime(text, "%d %b %Y").date()
    if fmt == "month_first":
        return strptime(text, "%B %d, %Y").date()
    if fmt == "abbr_suffix":
        match = re.fullmatch(r"(\w{3}) (\d+)(st|nd|rd|th), (\d{4})", text)
        assert match, text
        day = int(match.group(2))
        expected_suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        assert match.group(3) == expected_suffix, text
        return strptime(f"{match.group(1)} {day} {match.group(4)}", "%b %d %Y").date()
    if fmt == "weekday_abbr":
        return strptime(text, "%a, %d %b %Y").date()
    if fmt == "weekday_long":
        return strptime(text, "%A, %B %d, %Y").date()
    if fmt == "ordinal_words":
        word, rest = text.split(" of ")
        return strptime(f"{WORD_TO_DAY[word]} {rest}", "%d %B %Y").date()
    if fmt == "weekday_words":
        weekday, rest = text.split(" the ")
        word, rest = rest.split(" of ")
        date = strptime(f"{WORD_TO_DAY[word]} {rest}", "%d %B %Y").date()
        assert date.strftime("%A") == weekday, text
        return date
    raise AssertionError(f"no parser for {fmt}")


def test_every_format_has_a_parser_and_reads_back_a_known_date():
    d = dt.date(2021, 3, 3)
    assert format_date(d, "weekday_abbr") == "Wed, 3 Mar 2021"
    assert format_date(d, "slash_short") == "03/03/21"
    assert format_date(d, "ordinal_words") == "third of March 2021"
    assert format_date(d, "month_first") == "March 3, 2021"
    assert format_date(d, "dotted_iso") == "2021.03.03"
    assert format_date(d, "lower_short") == "3 march 21"
    for fmt in DATE_FORMATS:
        assert parse(format_date(d, fmt), fmt) == d, fmt


@pytest.mark.parametrize("fmt", sorted(DATE_FORMATS))
def test_each_format_round_trips_on_edge_and_random_dates(fmt):
    rng = random.Random(fmt)
    span = (LAST_DATE - FIRST_DATE).days
    days = [FIRST_DATE, LAST_DATE, dt.date(2000, 2, 29), dt.date(1999, 12, 31), dt.date(2011, 11, 11),
            dt.date(2022, 12, 22), dt.date(1973, 5, 13), dt.date(1988, 1, 1)]
    days += [FIRST_DATE + dt.timedelta(days=rng.randrange(span + 1)) for _ in range(200)]
    for d in days:
        assert parse(format_date(d, fmt), fmt) == d, (fmt, d, format_date(d, fmt))


def test_every_day_of_a_leap_year_has_its_own_ordinal_words():
    seen = {format_date(dt.date(2024, 1, day), "ordinal_words").split(" of ")[0] for day in range(1, 32)}
    assert seen == set(ORDINALS)


def test_format_date_rejects_unknown_formats_and_dates_outside_the_window():
    with pytest.raises(ValueError, match=r"fmt must be one of .*got 'american'"):
        format_date(dt.date(2021, 3, 3), "american")
    with pytest.raises(ValueError, match=r"between 1950-01-01 and 2049-12-31.*got 1949-12-31"):
        format_date(dt.date(1949, 12, 31), "compact")


@pytest.fixture(scope="module")
def data() -> DateData:
    return make_date_data(n_train=600, n_valid=100, n_test=300, seed=3)


def test_generated_sources_parse_to_their_iso_targets(data):
    for split in (data.train, data.valid, data.test):
        assert len(split.sources) == len(split.targets) == len(split.formats) == len(split)
        for source, target, fmt in zip(split.sources, split.targets, split.formats):
            date = parse(source, fmt)
            assert target == date.isoformat() and re.fullmatch(r"\d{4}-\d{2}-\d{2}", target)
            assert FIRST_DATE <= date <= LAST_DATE


def test_generation_is_reproducible_per_seed_and_changes_with_it(data):
    again = make_date_data(n_train=600, n_valid=100, n_test=300, seed=3)
    other = make_date_data(n_train=600, n_valid=100, n_test=300, seed=4)
    for name in ("train", "valid", "test"):
        a, b = getattr(data, name), getattr(again, name)
        assert a.sources == b.sources and a.formats == b.formats
        assert torch.equal(a.X, b.X) and torch.equal(a.Y, b.Y)
    assert data.src_vocab.idx_to_token == again.src_vocab.idx_to_token
    assert other.train.sources != data.train.sources


def test_generation_leaves_the_global_random_state_alone():
    torch.manual_seed(0)
    random.seed(0)
    expected_torch, expected_py = torch.rand(3), random.random()
    torch.manual_seed(0)
    random.seed(0)
    make_date_data(n_train=50, n_valid=5, n_test=5, seed=1)
    assert torch.equal(torch.rand(3), expected_torch) and random.random() == expected_py


def test_splits_share_no_date(data):
    train, valid, test = (set(s.targets) for s in (data.train, data.valid, data.test))
    assert len(train) == 600 and len(valid) == 100 and len(test) == 300  # no date twice inside a split either
    assert not train & valid and not train & test and not valid & test


def test_every_format_appears_in_training(data):
    assert set(data.train.formats) == set(DATE_FORMATS)


def test_sources_are_padded_and_end_with_eos(data):
    v = data.src_vocab
    for split in (data.train, data.test):
        n, T = split.X.shape
        assert T == int(split.X_valid_len.max())
        for row, (source, length) in enumerate(zip(split.sources, split.X_valid_len.tolist())):
            assert length == len(source) + 1
            assert split.X[row, length - 1] == v.eos
            assert (split.X[row, length:] == v.pad).all()
            assert (split.X[row, : length - 1] != v.pad).all()
            assert "".join(v.to_tokens(split.X[row, : length - 1])) == source


def test_targets_are_ten_characters_and_eos(data):
    v = data.tgt_vocab
    assert data.test.Y.shape == (300, 11)
    assert (data.test.Y_valid_len == 11).all() and (data.test.Y[:, -1] == v.eos).all()
    assert [v.decode(row) for row in data.test.Y] == data.test.targets
    assert set(v.idx_to_token) == {*Vocab.SPECIALS, *"0123456789-"}


def test_batches_cover_every_example_once_and_trim_padding(data):
    split = data.train
    seen = []
    gen = torch.Generator().manual_seed(0)
    for X, X_valid_len, Y, Y_valid_len in split.batches(64, shuffle=True, generator=gen):
        assert X.shape[0] == Y.shape[0] == X_valid_len.shape[0] == Y_valid_len.shape[0] <= 64
        assert X.shape[1] == int(X_valid_len.max())  # cut to the batch's own longest source
        for row in range(X.shape[0]):
            seen.append(data.src_vocab.decode(X[row]))
    assert sorted(seen) == sorted(split.sources)


def test_shuffled_batches_group_similar_lengths_and_follow_the_generator(data):
    split = data.train

    def padding_share(batches):
        real = sum(int(lens.sum()) for _, lens, _, _ in batches)
        total = sum(X.numel() for X, _, _, _ in batches)
        return 1 - real / total

    a = list(split.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)))
    b = list(split.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1)))
    c = list(split.batches(32, shuffle=True, generator=torch.Generator().manual_seed(2)))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    assert not all(x[0].shape == y[0].shape and torch.equal(x[0], y[0]) for x, y in zip(a, c))
    in_order = list(split.batches(32))
    assert padding_share(a) < 0.5 * padding_share(in_order)


def test_encode_sources_matches_the_split_encoding(data):
    X, lens = data.encode_sources(data.test.sources[:5])
    assert torch.equal(lens, data.test.X_valid_len[:5])
    assert torch.equal(X, data.test.X[:5, : X.shape[1]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_train": 0}, r"n_train must be >= 1"),
        ({"n_valid": -1}, r"n_valid must be a non-negative int, got -1"),
        ({"n_test": 2.5}, r"n_test must be a non-negative int, got 2.5"),
        ({"formats": ["compact", "roman"]}, r"keys of DATE_FORMATS, got unknown \['roman'\]"),
        ({"formats": []}, r"non-empty list"),
        ({"n_train": 40000}, r"at most 36525 examples fit"),
    ],
)
def test_make_date_data_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_date_data(**{"n_train": 10, "n_valid": 2, "n_test": 2, **kwargs})


def test_a_subset_of_formats_is_respected():
    d = make_date_data(n_train=50, n_valid=10, n_test=10, seed=0, formats=["compact", "dotted_iso"])
    assert set(d.train.formats + d.test.formats) <= {"compact", "dotted_iso"}
