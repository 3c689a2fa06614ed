"""The exercise checks of chapter 12 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch

from companion.exercises import long_sequences as ex

MERGE_CHECKS = [ex.check_online_softmax_merge_small, ex.check_online_softmax_merge_thorough]
MASK_CHECKS = [ex.check_local_attention_mask_small, ex.check_local_attention_mask_thorough]


# --- online_softmax_merge --------------------------------------------------------------------------


def merge_ok(m_a, l_a, o_a, m_b, l_b, o_b):
    m = torch.maximum(m_a, m_b)
    a, b = torch.exp(m_a - m), torch.exp(m_b - m)
    return m, a * l_a + b * l_b, a * o_a + b * o_b


def merge_with_where(m_a, l_a, o_a, m_b, l_b, o_b):
    a_wins = m_a >= m_b
    m = torch.where(a_wins, m_a, m_b)
    a = torch.where(a_wins, torch.ones_like(m_a), torch.exp(m_a - m_b))
    b = torch.where(a_wins, torch.exp(m_b - m_a), torch.ones_like(m_b))
    return (m, a * l_a + b * l_b, a * o_a + b * o_b)


def merge_no_rescale(m_a, l_a, o_a, m_b, l_b, o_b):
    return torch.maximum(m_a, m_b), l_a + l_b, o_a + o_b


def merge_l_only(m_a, l_a, o_a, m_b, l_b, o_b):
    m = torch.maximum(m_a, m_b)
    return m, torch.exp(m_a - m) * l_a + torch.exp(m_b - m) * l_b, o_a + o_b


def merge_upside_down(m_a, l_a, o_a, m_b, l_b, o_b):
    m = torch.maximum(m_a, m_b)
    a, b = torch.exp(m - m_a), torch.exp(m - m_b)
    return m, a * l_a + b * l_b, a * o_a + b * o_b


def merge_min(m_a, l_a, o_a, m_b, l_b, o_b):
    m = torch.minimum(m_a, m_b)
    a, b = torch.exp(m_a - m), torch.exp(m_b - m)
    return m, a * l_a + b * l_b, a * o_a + b * o_b


def merge_normalised(m_a, l_a, o_a, m_b, l_b, o_b):
    m, l_, o = merge_ok(m_a, l_a, o_a, m_b, l_b, o_b)
    return m, l_, o / l_


def merge_raw_exp(m_a, l_a, o_a, m_b, l_b, o_b):
    # exp of the maxima themselves: right for small scores, inf / NaN for large ones
    m = torch.maximum(m_a, m_b)
    a, b = torch.exp(m_a) / torch.exp(m), torch.exp(m_b) / torch.exp(m)
    return m, a * l_a + b * l_b, a * o_a + b * o_b


def merge_two_values(m_a, l_a, o_a, m_b, l_b, o_b):
    m, l_, o = merge_ok(m_a, l_a, o_a, m_b, l_b, o_b)
    return m, o


@pytest.mark.parametrize("answer", [merge_ok, merge_with_where])
@pytest.mark.parametrize("check", MERGE_CHECKS)
def test_merge_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (merge_no_rescale, "without rescaling"),
    (merge_l_only, "l is rescaled but o is not"),
    (merge_upside_down, "upside down"),
    (merge_min, "smaller one"),
    (merge_normalised, "o is divided by l"),
    (merge_two_values, "three tensors"),
])
@pytest.mark.parametrize("check", MERGE_CHECKS)
def test_merge_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_merge_thorough_catches_overflow() -> None:
    ex.check_online_softmax_merge_small(merge_raw_exp)  # small scores: right
    with pytest.raises(AssertionError, match="exp of the maxima"):
        ex.check_online_softmax_merge_thorough(merge_raw_exp)


# --- local_attention_mask --------------------------------------------------------------------------


def mask_ok(n, window):
    i = torch.arange(n)
    return (i[:, None] - i[None, :]).abs() <= window


def mask_loops(n, window):
    out = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        out[i, max(0, i - window):i + window + 1] = True
    return out


def mask_narrow(n, window):
    i = torch.arange(n)
    return (i[:, None] - i[None, :]).abs() < window


def mask_causal(n, window):
    i = torch.arange(n)
    d = i[:, None] - i[None, :]
    return (d >= 0) & (d <= window)


def mask_inverted(n, window):
    return ~mask_ok(n, window)


def mask_half(n, window):
    return mask_ok(n, window // 2)


def mask_float(n, window):
    return mask_ok(n, window).float()


@pytest.mark.parametrize("answer", [mask_ok, mask_loops])
@pytest.mark.parametrize("check", MASK_CHECKS)
def test_mask_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (mask_narrow, "one too narrow"),
    (mask_causal, "one-sided"),
    (mask_inverted, "inverted"),
    (mask_half, "each side"),
    (mask_float, "bool tensor"),
])
@pytest.mark.parametrize("check", MASK_CHECKS)
def test_mask_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_every_question_has_a_forbidden_entry() -> None:
    assert set(ex.FORBIDDEN) == {"online_softmax_merge", "local_attention_mask"}
