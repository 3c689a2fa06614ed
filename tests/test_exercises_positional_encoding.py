"""The exercise checks of chapter 7 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import math

import pytest
import torch

import companion.positional as pz
from companion.exercises import positional_encoding as ex

SE_CHECKS = [ex.check_sinusoidal_encoding_small, ex.check_sinusoidal_encoding_thorough]
RO_CHECKS = [ex.check_rotation_for_offset_small, ex.check_rotation_for_offset_thorough]
AR_CHECKS = [ex.check_apply_rope_small, ex.check_apply_rope_thorough]


# --- reference solutions (as a learner would write them, in float32 like d2l) ----------------------------------------


def table(max_len, d, *, base=10000.0, exponent=None, start=0, swap=False, layout="interleaved"):
    """A learner-style table with knobs for each mistake."""
    pos = torch.arange(start, start + max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    e = torch.arange(0, d, 2, dtype=torch.float32) if exponent is None else exponent
    angles = pos / torch.pow(torch.tensor(base), e / d)  # (max_len, d/2)
    first, second = (torch.cos(angles), torch.sin(angles)) if swap else (torch.sin(angles), torch.cos(angles))
    if layout == "concat":
        return torch.cat((first, second), dim=1)
    P = torch.zeros(max_len, d)
    P[:, 0::2], P[:, 1::2] = first, second
    return P


def se_ok(max_len, d):
    return table(max_len, d)


def se_float64(max_len, d):
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    w = torch.exp(-torch.arange(0, d, 2, dtype=torch.float64) / d * math.log(10000.0))
    P = torch.empty(max_len, d, dtype=torch.float64)
    P[:, 0::2], P[:, 1::2] = torch.sin(pos * w), torch.cos(pos * w)
    return P


def ro_ok(k, d):
    blocks = []
    for i in range(d // 2):
        a = k / 10000 ** (2 * i / d)
        blocks.append(torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]))
    return torch.block_diag(*blocks)


def rope_ok(x):
    n, d = x.shape[-2:]
    angles = torch.arange(n)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)  # (n, d/2)
    c, s = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out


@pytest.mark.parametrize("check", SE_CHECKS)
def test_sinusoidal_checks_accept_reference(check):
    check(se_ok)
    check(se_float64)
    check(lambda max_len, d: pz.sinusoidal_encoding(max_len, d))
    check(lambda max_len, d: pz.PositionalEncoding(d, 0.0, max_len).P[0])  # the module's table, batch axis dropped


@pytest.mark.parametrize("check", RO_CHECKS)
def test_rotation_checks_accept_reference(check):
    check(ro_ok)
    check(lambda k, d: pz.offset_rotation(k, d))


@pytest.mark.parametrize("check", AR_CHECKS)
def test_rope_checks_accept_reference(check):
    check(rope_ok)
    check(lambda x: pz.apply_rotary(x))
    # Through the rotation matrices of exercise 2: row m times M_m transposed.
    check(lambda x: torch.stack([x[..., m, :] @ ro_ok(m, x.shape[-1]).to(x.dtype).T for m in range(x.shape[-2])], -2))


# --- diagnosed mistakes: the sinusoidal table ------------------------------------------------------------------------

SE_MISTAKES = {
    "swapped": (lambda n, d: table(n, d, swap=True), r"sines and cosines are swapped"),
    "i instead of 2i": (lambda n, d: table(n, d, exponent=torch.arange(d // 2).float()), r"uses i where it needs 2i"),
    "base 1000": (lambda n, d: table(n, d, base=1000.0), r"base is not 10000"),
    "base e": (lambda n, d: table(n, d, base=math.e), r"the base is e"),
    "multiplied": (lambda n, d: table(n, d, exponent=-torch.arange(0, d, 2).float()), r"multiplied the position"),
    "start at 1": (lambda n, d: table(n, d, start=1), r"positions start at 1"),
    "concatenated": (lambda n, d: table(n, d, layout="concat"), r"all sines come first"),
    "batch axis": (lambda n, d: table(n, d)[None], r"leading batch axis"),
    "transposed": (lambda n, d: table(n, d).T, r"transposed table"),
}


def se_column_exponent(max_len, d):
    # Each column j uses 10000^(j/d): the sine and the cosine of a pair get different frequencies.
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    angles = pos / 10000 ** (torch.arange(d, dtype=torch.float32) / d)  # (max_len, d)
    P = torch.sin(angles)
    P[:, 1::2] = torch.cos(angles[:, 1::2])
    return P


SE_MISTAKES["column exponent"] = (se_column_exponent, r"each column got its own exponent")


@pytest.mark.parametrize("check", SE_CHECKS)
@pytest.mark.parametrize("mistake", sorted(SE_MISTAKES))
def test_sinusoidal_checks_name_the_mistake(check, mistake):
    wrong, hint = SE_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_sinusoidal_hidden_check_catches_a_width_specific_bug():
    # Hard-coding the width of the public case passes it, and fails the hidden one.
    def fixed_width(max_len, d):
        return table(max_len, 6)

    ex.check_sinusoidal_encoding_small(fixed_width)
    with pytest.raises(AssertionError, match=r"shape"):
        ex.check_sinusoidal_encoding_thorough(fixed_width)


def test_sinusoidal_check_rejects_a_numpy_table():
    with pytest.raises(AssertionError, match="torch.Tensor"):
        ex.check_sinusoidal_encoding_small(lambda n, d: table(n, d).numpy())


# --- diagnosed mistakes: the rotation for an offset ----------------------------------------------------------------


def ro_with(k, d, *, freq=lambda i, d: 10000 ** (-2 * i / d), block=lambda c, s: [[c, -s], [s, c]]):
    blocks = []
    for i in range(d // 2):
        a = k * freq(i, d)
        blocks.append(torch.tensor(block(math.cos(a), math.sin(a))))
    return torch.block_diag(*blocks)


RO_MISTAKES = {
    "transposed": (lambda k, d: ro_with(k, d, block=lambda c, s: [[c, s], [-s, c]]), r"shifts backwards"),
    "no frequencies": (lambda k, d: ro_with(k, d, freq=lambda i, d: 1.0), r"every block rotates by the angle k"),
    "i instead of 2i": (lambda k, d: ro_with(k, d, freq=lambda i, d: 10000 ** (-i / d)), r"10000\^\(i/d\)"),
    "both plus": (lambda k, d: ro_with(k, d, block=lambda c, s: [[c, s], [s, c]]), r"not a rotation"),
    "cos sin swapped": (lambda k, d: ro_with(k, d, block=lambda c, s: [[s, -c], [c, s]]), r"swapped inside"),
    "blocks only": (
        lambda k, d: torch.stack([ro_with(k, 2, freq=lambda i, _: 10000 ** (-2 * j / d)) for j in range(d // 2)]),
        r"returned the d/2 blocks",
    ),
}


@pytest.mark.parametrize("check", RO_CHECKS)
@pytest.mark.parametrize("mistake", sorted(RO_MISTAKES))
def test_rotation_checks_name_the_mistake(check, mistake):
    wrong, hint = RO_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_rotation_hidden_check_catches_a_wrong_identity():
    # Right for k != 0, wrong at k = 0 (an off-by-one in the angle): only the hidden check has k = 0.
    def shifted(k, d):
        return ro_ok(k if k else 1, d)

    ex.check_rotation_for_offset_small(shifted)
    with pytest.raises(AssertionError, match="wrong values"):
        ex.check_rotation_for_offset_thorough(shifted)


# --- diagnosed mistakes: rotary embeddings ---------------------------------------------------------------------------


def rope_with(x, *, sign=1.0, freq=None, start=0):
    n, d = x.shape[-2:]
    w = 10000 ** (-torch.arange(0, d, 2) / d) if freq is None else freq(d)
    angles = sign * torch.arange(start, start + n)[:, None] * w
    c, s = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)


def rope_half_split(x):
    n, d = x.shape[-2:]
    angles = torch.arange(n)[:, None] * 10000 ** (-torch.arange(0, d, 2) / d)
    c, s = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)


def encoding_like(x):
    return pz.sinusoidal_encoding(x.shape[-2], x.shape[-1]).to(x.dtype)


AR_MISTAKES = {
    "wrong way": (lambda x: rope_with(x, sign=-1.0), r"rotation goes the wrong way"),
    "half split": (rope_half_split, r"half-split layout"),
    "i instead of 2i": (lambda x: rope_with(x, freq=lambda d: 10000 ** (-torch.arange(d // 2) / d)), r"10000\^\(i/d\)"),
    "no frequencies": (lambda x: rope_with(x, freq=lambda d: torch.ones(d // 2)), r"every pair turns by the angle pos"),
    "start at 1": (lambda x: rope_with(x, start=1), r"positions start at 1"),
    "added": (lambda x: x + encoding_like(x), r"you added the sinusoidal encoding"),
    "multiplied": (lambda x: x * encoding_like(x), r"multiplied by the encoding elementwise"),
    "cos only": (lambda x: x * torch.cos(torch.arange(x.shape[-2])[:, None] * 10000 ** (
        -torch.arange(0, x.shape[-1], 2) / x.shape[-1])).repeat_interleave(2, dim=-1), r"only the cosine part"),
}


@pytest.mark.parametrize("check", AR_CHECKS)
@pytest.mark.parametrize("mistake", sorted(AR_MISTAKES))
def test_rope_checks_name_the_mistake(check, mistake):
    wrong, hint = AR_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_rope_hidden_check_catches_a_two_dimensional_only_answer():
    def only_2d(x):
        n, d = x.shape
        return rope_ok(x)

    ex.check_apply_rope_small(only_2d)
    with pytest.raises(AssertionError, match=r"raised ValueError"):
        ex.check_apply_rope_thorough(only_2d)


def test_rope_check_rejects_in_place_change():
    def in_place(x):
        x.copy_(rope_ok(x.clone()))
        return x

    with pytest.raises(AssertionError, match="in place"):
        ex.check_apply_rope_small(in_place)
