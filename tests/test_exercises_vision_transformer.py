"""The exercise checks of chapter 13 accept the reference and name each diagnosed mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from companion.exercises import vision_transformer as ex

PATCHIFY_CHECKS = [ex.check_patchify_small, ex.check_patchify_thorough]
ROLLOUT_CHECKS = [ex.check_attention_rollout_small, ex.check_attention_rollout_thorough]


# --- patchify ----------------------------------------------------------------------------------------------------


def patchify_ok(X, patch_size):
    B, C, H, W = X.shape
    p = patch_size
    X = X.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return X.reshape(B, -1, C * p * p)


def patchify_unfold(X, patch_size):
    return F.unfold(X, patch_size, stride=patch_size).transpose(1, 2)


def patchify_loops(X, patch_size):
    p = patch_size
    rows = [X[:, :, i:i + p, j:j + p].flatten(1) for i in range(0, X.shape[2], p) for j in range(0, X.shape[3], p)]
    return torch.stack(rows, dim=1)


def patchify_channel_last(X, patch_size):
    B, C, H, W = X.shape
    p = patch_size
    return X.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, C * p * p)


def patchify_column_major(X, patch_size):
    B, C, H, W = X.shape
    p = patch_size
    return X.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 1, 3, 5).reshape(B, -1, C * p * p)


def patchify_pixels_swapped(X, patch_size):
    B, C, H, W = X.shape
    p = patch_size
    return X.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 5, 3).reshape(B, -1, C * p * p)


def patchify_plain_reshape(X, patch_size):
    B, C, H, W = X.shape
    return X.reshape(B, (H // patch_size) * (W // patch_size), -1)


def patchify_unfold_untransposed(X, patch_size):
    return F.unfold(X, patch_size, stride=patch_size)


def patchify_overlapping(X, patch_size):
    return F.unfold(X, patch_size).transpose(1, 2)


def patchify_in_place(X, patch_size):
    X.mul_(1.0)
    X[0, 0, 0, 0] = 5.0
    return patchify_ok(X, patch_size)


@pytest.mark.parametrize("answer", [patchify_ok, patchify_unfold, patchify_loops])
@pytest.mark.parametrize("check", PATCHIFY_CHECKS)
def test_patchify_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (patchify_column_major, "row by row"),
    (patchify_pixels_swapped, "pixel axes are swapped"),
    (patchify_plain_reshape, "plain reshape"),
    (patchify_unfold_untransposed, "transpose the last two axes"),
    (patchify_overlapping, "overlap"),
    (patchify_in_place, "in place"),
])
@pytest.mark.parametrize("check", PATCHIFY_CHECKS)
def test_patchify_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_patchify_thorough_names_the_channel_order() -> None:
    # With one channel, channel first and channel last are the same: only the thorough check has three.
    ex.check_patchify_small(patchify_channel_last)
    with pytest.raises(AssertionError, match="channel first"):
        ex.check_patchify_thorough(patchify_channel_last)


def test_patchify_thorough_catches_a_mistake_the_small_check_cannot_see() -> None:
    def grey_only(X, patch_size):  # right for one channel, wrong for three
        return patchify_channel_last(X, patch_size) if X.shape[1] > 1 else patchify_ok(X, patch_size)
    ex.check_patchify_small(grey_only)
    with pytest.raises(AssertionError, match="channel first"):
        ex.check_patchify_thorough(grey_only)


# --- attention rollout -------------------------------------------------------------------------------------------


def rollout_ok(attention_weights):
    R = None
    for W in attention_weights:
        A = 0.5 * W.mean(dim=1) + 0.5 * torch.eye(W.shape[-1], dtype=W.dtype)
        R = A if R is None else A @ R
    return R


def rollout_einsum(attention_weights):
    n = attention_weights[0].shape[-1]
    R = torch.eye(n, dtype=attention_weights[0].dtype).expand(attention_weights[0].shape[0], n, n)
    for W in attention_weights:
        A = 0.5 * torch.einsum("bhij->bij", W) / W.shape[1] + 0.5 * torch.eye(n, dtype=W.dtype)
        R = torch.einsum("bij,bjk->bik", A, R)
    return R


def _mixed(W, eye_weight=0.5):
    return (1 - eye_weight) * W.mean(dim=1) + eye_weight * torch.eye(W.shape[-1], dtype=W.dtype)


def rollout_wrong_order(attention_weights):
    R = None
    for W in attention_weights:
        R = _mixed(W) if R is None else R @ _mixed(W)
    return R


def rollout_no_residual(attention_weights):
    R = None
    for W in attention_weights:
        R = W.mean(1) if R is None else W.mean(1) @ R
    return R


def rollout_unnormalised(attention_weights):
    R = None
    for W in attention_weights:
        A = W.mean(1) + torch.eye(W.shape[-1], dtype=W.dtype)
        R = A if R is None else A @ R
    return R


def rollout_max_heads(attention_weights):
    R = None
    for W in attention_weights:
        A = 0.5 * W.max(1).values + 0.5 * torch.eye(W.shape[-1], dtype=W.dtype)
        R = A if R is None else A @ R
    return R


def rollout_sum_heads(attention_weights):
    R = None
    for W in attention_weights:
        A = 0.5 * W.sum(1) + 0.5 * torch.eye(W.shape[-1], dtype=W.dtype)
        R = A if R is None else A @ R
    return R


def rollout_added(attention_weights):
    return sum(_mixed(W) for W in attention_weights)


def rollout_last_only(attention_weights):
    return _mixed(attention_weights[-1])


def rollout_first_only(attention_weights):
    return _mixed(attention_weights[0])


@pytest.mark.parametrize("answer", [rollout_ok, rollout_einsum])
@pytest.mark.parametrize("check", ROLLOUT_CHECKS)
def test_rollout_checks_accept_correct_answers(check, answer) -> None:
    check(answer)


@pytest.mark.parametrize("answer, hint", [
    (rollout_wrong_order, "wrong order"),
    (rollout_no_residual, "skip connection is missing"),
    (rollout_unnormalised, "rows summing to 2"),
    (rollout_max_heads, "not taken at their maximum"),
    (rollout_sum_heads, "not summed"),
    (rollout_added, "multiplied, not added"),
    (rollout_last_only, "not only the last one"),
    (rollout_first_only, "not only the first one"),
])
@pytest.mark.parametrize("check", ROLLOUT_CHECKS)
def test_rollout_checks_name_the_mistake(check, answer, hint) -> None:
    with pytest.raises(AssertionError, match=hint):
        check(answer)


def test_rollout_thorough_catches_a_mistake_the_small_check_cannot_see() -> None:
    def two_layers_only(attention_weights):  # right for the chapter's two layers, wrong for the others
        return rollout_ok(attention_weights[-2:])
    ex.check_attention_rollout_small(two_layers_only)
    with pytest.raises(AssertionError):
        ex.check_attention_rollout_thorough(two_layers_only)


def test_forbidden_names_the_course_implementations() -> None:
    assert set(ex.FORBIDDEN) == {"patchify", "attention_rollout"}
    assert "companion.vision_transformer.attention_rollout" in ex.FORBIDDEN["attention_rollout"]
