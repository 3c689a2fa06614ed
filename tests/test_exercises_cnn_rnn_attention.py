"""The exercise checks of chapter 10 accept correct answers and name each diagnosed mistake."""
from __future__ import annotations

import pytest
import torch

from companion.exercises import cnn_rnn_attention as ex

CONV_CHECKS = [ex.check_conv1d_as_attention_small, ex.check_conv1d_as_attention_thorough]
REACH_CHECKS = [ex.check_layers_to_reach_small, ex.check_layers_to_reach_thorough]


# --- reference solutions (as a learner would write them) ----------------------------------------


def _heads(n, k, dilation, dtype, shift=0, circular=False, flip=False):
    heads = []
    for j in range(k):
        tap = k - 1 - j if flip else j
        off = (tap - (k - 1) // 2) * dilation + shift
        A = torch.zeros(n, n, dtype=dtype)
        for i in range(n):
            m = i + off
            if circular:
                A[i, m % n] = 1.0
            elif 0 <= m < n:
                A[i, m] = 1.0
        heads.append(A)
    return heads


def conv_ok(X, weight, bias, dilation=1):
    out = bias.expand(X.shape[0], X.shape[1], -1).clone()
    for j, A in enumerate(_heads(X.shape[1], weight.shape[-1], dilation, X.dtype)):
        out = out + A @ (X @ weight[:, :, j].T)
    return out


def conv_by_padding_and_shifting(X, weight, bias, dilation=1):
    k = weight.shape[-1]
    p = dilation * (k - 1) // 2
    Xp = torch.nn.functional.pad(X, (0, 0, p, p))
    n = X.shape[1]
    return sum(Xp[:, j * dilation: j * dilation + n] @ weight[:, :, j].T for j in range(k)) + bias


def _conv_with(**kw):
    def answer(X, weight, bias, dilation=1):
        d = kw.get("dilation_override", dilation)
        heads = _heads(X.shape[1], weight.shape[-1], d, X.dtype, kw.get("shift", 0), kw.get("circular", False),
                       kw.get("flip", False))
        out = 0
        for j, A in enumerate(heads):
            W = weight[:, :, j]
            out = out + A @ (X @ (W if kw.get("transposed") else W.T))
        if kw.get("no_bias"):
            return out
        if kw.get("bias_per_head"):
            return out + len(heads) * bias
        return out + bias
    return answer


def reach_ok(C):
    n = C.shape[0]
    D = torch.zeros(n, n, dtype=torch.long)
    R = torch.eye(n, dtype=torch.long)
    for L in range(1, n + 1):
        R = ((C.long() @ R) > 0).long()
        D[(D == 0) & (R > 0)] = L
    return D


def reach_by_search(C):
    """Breadth-first search from every input: a different algorithm, the same answer."""
    n = C.shape[0]
    D = torch.zeros(n, n, dtype=torch.long)
    for j in range(n):
        frontier = {j}
        for L in range(1, n + 1):
            frontier = {i for i in range(n) for m in frontier if C[i, m]}
            for i in frontier:
                if D[i, j] == 0:
                    D[i, j] = L
    return D


@pytest.mark.parametrize("check", CONV_CHECKS)
@pytest.mark.parametrize("solution", [conv_ok, conv_by_padding_and_shifting])
def test_conv_checks_accept_correct_answers(check, solution):
    check(solution)


@pytest.mark.parametrize("check", REACH_CHECKS)
@pytest.mark.parametrize("solution", [reach_ok, reach_by_search])
def test_reach_checks_accept_correct_answers(check, solution):
    check(solution)


@pytest.mark.parametrize("mistake, hint, checks", [
    (_conv_with(flip=True), "flipped", CONV_CHECKS),
    (_conv_with(no_bias=True), "bias is missing", CONV_CHECKS),
    (_conv_with(bias_per_head=True), "once per head", CONV_CHECKS),
    (_conv_with(circular=True), "wraps around", CONV_CHECKS),
    (_conv_with(shift=1), "to the right", CONV_CHECKS),
    (_conv_with(shift=-1), "to the left", CONV_CHECKS),
    (_conv_with(dilation_override=1), "dilation was ignored", [ex.check_conv1d_as_attention_thorough]),
    (_conv_with(transposed=True), "transposed", [ex.check_conv1d_as_attention_thorough]),
])
def test_conv_checks_name_the_mistake(mistake, hint, checks):
    for check in checks:
        with pytest.raises(AssertionError, match=hint):
            check(mistake)


def test_conv_check_names_averaged_heads():
    def averaged(X, weight, bias, dilation=1):
        return (conv_ok(X, weight, bias, dilation) - bias) / weight.shape[-1] + bias
    with pytest.raises(AssertionError, match="averaged"):
        ex.check_conv1d_as_attention_small(averaged)


@pytest.mark.parametrize("mistake, hint", [
    (lambda C: reach_ok(C.T), "transposed"),
    (lambda C: torch.where(reach_ok(C) > 0, reach_ok(C) - 1, reach_ok(C)), "not 0"),
    (lambda C: torch.where(reach_ok(C) == 0, -1, reach_ok(C)), "should be 0"),
    (lambda C: reach_ok(C) > 0, "boolean"),
])
def test_reach_checks_name_the_mistake(mistake, hint):
    for check in REACH_CHECKS:
        with pytest.raises(AssertionError, match=hint):
            check(mistake)


def test_reach_thorough_check_catches_a_diagonal_assumed_connected():
    def assumes_diagonal(C):
        D = reach_ok(C)
        D[torch.eye(C.shape[0], dtype=torch.bool)] = 1
        return D
    ex.check_layers_to_reach_small(assumes_diagonal)  # every C there has its diagonal
    with pytest.raises(AssertionError):
        ex.check_layers_to_reach_thorough(assumes_diagonal)


def test_conv_check_rejects_a_change_to_its_input():
    def in_place(X, weight, bias, dilation=1):
        out = conv_ok(X, weight, bias, dilation)
        X.zero_()
        return out
    with pytest.raises(AssertionError, match="X"):
        ex.check_conv1d_as_attention_small(in_place)


def test_forbidden_has_one_entry_per_question():
    assert set(ex.FORBIDDEN) == {"conv1d_as_attention", "layers_to_reach"}
