"""Tests of the masked errors of companion.metrics (chapter 15): a 0 label is a missing reading."""
import math

import pytest
import torch

from companion.metrics import masked_mae, masked_mape, masked_rmse


def readings(seed=0, shape=(8, 5)):
    gen = torch.Generator().manual_seed(seed)
    labels = 20 + 40 * torch.rand(shape, generator=gen)
    preds = labels + 3 * torch.randn(shape, generator=gen)
    return preds, labels, gen


def test_injected_zeros_are_left_out_of_every_masked_error():
    preds, labels, gen = readings()
    missing = torch.rand(labels.shape, generator=gen) < 0.3
    with_zeros = labels.masked_fill(missing, 0.0)
    kept = ~missing
    error = preds[kept] - labels[kept]
    torch.testing.assert_close(masked_mae(preds, with_zeros), error.abs().mean())
    torch.testing.assert_close(masked_rmse(preds, with_zeros), error.pow(2).mean().sqrt())
    torch.testing.assert_close(masked_mape(preds, with_zeros), (error.abs() / labels[kept]).mean())
    # Against the plain MAE, which counts each zero as an error of about the reading itself.
    assert (preds - with_zeros).abs().mean() > 3 * masked_mae(preds, with_zeros)


def test_without_zeros_the_masked_errors_are_the_plain_ones():
    preds, labels, _ = readings(1)
    torch.testing.assert_close(masked_mae(preds, labels), (preds - labels).abs().mean())
    torch.testing.assert_close(masked_rmse(preds, labels), (preds - labels).pow(2).mean().sqrt())


@pytest.mark.parametrize("metric", [masked_mae, masked_rmse, masked_mape])
def test_an_all_missing_batch_has_no_score_not_zero(metric):
    preds, labels, _ = readings(2)
    score = metric(preds, torch.zeros_like(labels))
    assert torch.isnan(score), score


def test_a_prediction_where_nothing_was_read_stays_out():
    preds, labels, _ = readings(3)
    labels[0, :2] = 0.0
    preds[0, 0], preds[0, 1] = float("nan"), float("inf")
    score = masked_mae(preds, labels)
    assert torch.isfinite(score)
    torch.testing.assert_close(score, (preds[1:] - labels[1:]).abs().sum().add(
        (preds[0, 2:] - labels[0, 2:]).abs().sum()) / (labels.numel() - 2))


def test_nan_as_the_missing_value():
    preds, labels, _ = readings(4)
    labels[2, 3] = float("nan")
    expected = masked_mae(preds, labels.nan_to_num(0.0))
    torch.testing.assert_close(masked_mae(preds, labels, null_val=math.nan), expected)


def test_masked_mae_is_a_loss_one_can_train_with():
    preds, labels, _ = readings(5)
    labels[:, 0] = 0.0
    preds.requires_grad_()
    masked_mae(preds, labels).backward()
    assert (preds.grad[:, 0] == 0).all() and (preds.grad[:, 1:] != 0).all()


def test_masked_errors_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        masked_mae(torch.ones(3, 4), torch.ones(4, 3))
    with pytest.raises(ValueError, match="tensors"):
        masked_rmse([1.0], torch.ones(1))
