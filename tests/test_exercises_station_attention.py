"""The exercise checks of chapter 15 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch

from companion.exercises import station_attention as ex

MAE_CHECKS = [ex.check_masked_mae_small, ex.check_masked_mae_thorough]
ADJ_CHECKS = [ex.check_adaptive_adjacency_small, ex.check_adaptive_adjacency_thorough]


# --- masked_mae --------------------------------------------------------------------------------------------


def mae_ok(preds, labels):
    observed = labels != 0
    return (preds[observed] - labels[observed]).abs().mean()


def mae_with_where(preds, labels):
    observed = labels != 0
    total = torch.where(observed, (preds - labels).abs(), torch.zeros_like(preds)).sum()
    return total / observed.sum()  # 0 / 0 is NaN when nothing is observed


def mae_float(preds, labels):
    return float(mae_ok(preds, labels))


def mae_plain(preds, labels):
    return (preds - labels).abs().mean()


def mae_over_all(preds, labels):
    observed = labels != 0
    return ((preds - labels).abs() * observed).sum() / labels.numel()


def mae_mask_from_preds(preds, labels):
    observed = preds != 0
    return (preds[observed] - labels[observed]).abs().mean()


def mae_mask_both(preds, labels):
    observed = (labels != 0) & (preds != 0)
    return (preds[observed] - labels[observed]).abs().mean()


def mae_signed(preds, labels):
    observed = labels != 0
    return (preds[observed] - labels[observed]).mean()


def mae_dcrnn(preds, labels):
    # DCRNN / Graph WaveNet: the mask divided by its mean, NaN replaced by 0: an empty batch scores 0
    mask = (labels != 0).float()
    mask = mask / mask.mean()
    mask = torch.where(torch.isnan(mask), torch.zeros_like(mask), mask)
    loss = (preds - labels).abs() * mask
    return torch.where(torch.isnan(loss), torch.zeros_like(loss), loss).mean()


def mae_multiplied(preds, labels):
    observed = labels != 0
    return ((preds - labels).abs() * observed).sum() / observed.sum()


@pytest.mark.parametrize("answer", [mae_ok, mae_with_where, mae_float])
@pytest.mark.parametrize("check", MAE_CHECKS)
def test_mae_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (mae_plain, "missing reading, not a flow of 0"),
    (mae_mask_from_preds, "missing reading, not a flow of 0"),
    (mae_over_all, "number of observed readings"),
    (mae_signed, "absolute"),
])
@pytest.mark.parametrize("check", MAE_CHECKS)
def test_mae_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_mae_thorough_catches_what_the_small_check_cannot_see() -> None:
    # Right on every batch with a reading; wrong on the empty batch, on NaN predictions, on predictions of 0.
    for answer, hint in [(mae_dcrnn, "every reading is missing"), (mae_multiplied, "multiply by the mask"),
                         (mae_mask_both, "a prediction of 0 is still")]:
        ex.check_masked_mae_small(answer)
        with pytest.raises(AssertionError, match=hint):
            ex.check_masked_mae_thorough(answer)


# --- adaptive_adjacency -------------------------------------------------------------------------------------


def adj_ok(E1, E2):
    return torch.softmax(torch.relu(E1 @ E2.T), dim=-1)


def adj_loops(E1, E2):
    rows = []
    for i in range(E1.shape[0]):
        scores = torch.clamp(E2 @ E1[i], min=0)
        rows.append(torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum())
    return torch.stack(rows)


def adj_no_relu(E1, E2):
    return torch.softmax(E1 @ E2.T, dim=-1)


def adj_columns(E1, E2):
    return torch.softmax(torch.relu(E1 @ E2.T), dim=0)


def adj_transposed(E1, E2):
    return torch.softmax(torch.relu(E2 @ E1.T), dim=-1)


def adj_no_softmax(E1, E2):
    return torch.relu(E1 @ E2.T)


def adj_divided(E1, E2):
    r = torch.relu(E1 @ E2.T)
    return r / r.sum(-1, keepdim=True)


def adj_raw_exp(E1, E2):
    e = torch.exp(torch.relu(E1 @ E2.T))
    return e / e.sum(-1, keepdim=True)


@pytest.mark.parametrize("answer", [adj_ok, adj_loops])
@pytest.mark.parametrize("check", ADJ_CHECKS)
def test_adjacency_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (adj_no_relu, "ReLU is missing"),
    (adj_columns, "wrong axis"),
    (adj_transposed, "transposed"),
    (adj_no_softmax, "softmax is missing"),
    (adj_divided, "divided by its sum"),
])
@pytest.mark.parametrize("check", ADJ_CHECKS)
def test_adjacency_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_adjacency_thorough_catches_overflow() -> None:
    ex.check_adaptive_adjacency_small(adj_raw_exp)  # small scores: right
    with pytest.raises(AssertionError, match="overflow"):
        ex.check_adaptive_adjacency_thorough(adj_raw_exp)


def test_every_question_has_a_forbidden_entry() -> None:
    assert set(ex.FORBIDDEN) == {"masked_mae", "adaptive_adjacency"}
