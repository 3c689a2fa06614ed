"""Checks for the exercises of chapter 15, attention over stations (how a check works: companion.exercises)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from companion.exercises import call_on_copies, expect_close, expect_returned

__all__ = [
    "FORBIDDEN",
    "check_masked_mae_small",
    "check_masked_mae_thorough",
    "check_adaptive_adjacency_small",
    "check_adaptive_adjacency_thorough",
]

# What each answer may not call: the course's own implementation of it (the judge scores such an
# answer 0). Nothing in companion.exercises may be called by any answer.
FORBIDDEN = {
    "masked_mae": [
        "companion.metrics.masked_mae",
        "companion.metrics.masked_rmse",
        "companion.metrics.masked_mape",
    ],
    "adaptive_adjacency": [
        "companion.station_attention.adaptive_adjacency",
        "companion.station_attention.AdaptiveAdjacency",
    ],
}

# ---------------------------------------------------------------------------
# Exercise 1: the masked MAE, a 0 reading is missing
# ---------------------------------------------------------------------------


def _masked_mae(preds: Tensor, labels: Tensor) -> Tensor:
    observed = labels != 0
    return (preds[observed] - labels[observed]).abs().mean()


def _mae_mistakes(preds: Tensor, labels: Tensor) -> dict[str, Tensor]:
    observed = labels != 0
    error = (preds - labels).abs()
    both = observed & (preds != 0)
    return {
        "a 0 label is a missing reading, not a flow of 0: leave it out (observed = labels != 0) instead of "
        "scoring the prediction against 0.": error.mean(),
        "the missing readings count as errors of 0: divide by the number of observed readings "
        "(observed.sum()), not by all of them.": (error * observed).sum() / labels.numel(),
        "only the labels say what is missing: a prediction of 0 is still a (bad) prediction and is scored, "
        "so observed = labels != 0, not a mask from the predictions too.":
            (preds[both] - labels[both]).abs().mean(),
        "the error is absolute: take |preds - labels| (.abs()) before the mean, so that errors of opposite "
        "signs do not cancel.": (preds[observed] - labels[observed]).mean(),
    }


def _check_mae_on(fn: Callable[..., Any], preds: Tensor, labels: Tensor, seconds: float) -> None:
    name = "masked_mae"
    actual = call_on_copies(fn, preds, labels, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _masked_mae(preds, labels)
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        actual = torch.tensor(float(actual), dtype=expected.dtype)  # a Python number is fine
    if torch.isnan(expected):
        _expect_no_score(actual, name)
        return
    if isinstance(actual, Tensor) and actual.numel() == 1 and torch.isnan(actual.detach().float()).all():
        raise AssertionError(f"`{name}` returned NaN although some readings are observed: did you multiply "
                             "by the mask? A NaN or inf prediction at a missing reading gives NaN * 0 = NaN; "
                             "select the observed entries instead (preds[observed]).")
    if isinstance(actual, Tensor) and actual.dim() != 0 and actual.numel() == 1:
        actual = actual.reshape(())
    expect_close(actual, expected, name=name, mistakes=_mae_mistakes(preds, labels))


def _expect_no_score(actual: Any, name: str) -> None:
    if isinstance(actual, Tensor) and actual.numel() == 1 and torch.isnan(actual.detach().float()).all():
        return
    if isinstance(actual, Tensor) and actual.numel() == 1 and float(actual) == 0.0:
        raise AssertionError(f"`{name}` returned 0 for a batch in which every reading is missing: a batch "
                             "with nothing observed has no score and must give NaN (so it is skipped), not 0, "
                             "which would count as a perfect prediction. The mean of an empty selection is "
                             "NaN already.")
    raise AssertionError(f"`{name}` should return NaN when every reading is missing (nothing to score), "
                         f"got {actual!r:.60}.")


def _readings(shape: tuple[int, ...], gen: torch.Generator, missing: float = 0.3,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    labels = 20 + 50 * torch.rand(*shape, generator=gen, dtype=dtype)
    labels = labels.masked_fill(torch.rand(*shape, generator=gen) < missing, 0.0)
    preds = labels.where(labels != 0, 45.0) + 8 * torch.randn(*shape, generator=gen, dtype=dtype)
    return preds, labels


def check_masked_mae_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: a batch of 4 x 5 readings with injected zeros."""
    preds, labels = _readings((4, 5), torch.Generator().manual_seed(0))
    _check_mae_on(fn, preds, labels, seconds)


def check_masked_mae_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: other shapes, float64, nothing missing, all missing, a NaN prediction at a missing reading,
    predictions of exactly 0."""
    gen = torch.Generator().manual_seed(1)
    for shape in [(7,), (3, 4, 6), (64, 12)]:
        _check_mae_on(fn, *_readings(shape, gen), seconds)
    _check_mae_on(fn, *_readings((5, 3), gen, dtype=torch.float64), seconds)
    _check_mae_on(fn, *_readings((6, 4), gen, missing=0.0), seconds)  # nothing missing: the plain MAE
    _check_mae_on(fn, *_readings((6, 4), gen, missing=1.1), seconds)  # everything missing: NaN, not 0
    preds, labels = _readings((5, 6), gen, missing=0.4)
    labels[0, 0] = 0.0
    preds[0, 0] = float("nan")  # garbage where nothing was read must not spoil the score
    _check_mae_on(fn, preds, labels, seconds)
    preds, labels = _readings((5, 6), gen)
    preds[:, 0] = 0.0  # a prediction of 0 is a (bad) prediction, not a missing reading
    _check_mae_on(fn, preds, labels, seconds)


# ---------------------------------------------------------------------------
# Exercise 2: Graph WaveNet's adaptive adjacency, softmax(ReLU(E1 E2^T)) over each row
# ---------------------------------------------------------------------------


def _adjacency(E1: Tensor, E2: Tensor) -> Tensor:
    return torch.softmax(torch.relu(E1 @ E2.T), dim=-1)


def _adjacency_mistakes(E1: Tensor, E2: Tensor) -> dict[str, Tensor]:
    scores = E1 @ E2.T
    relu = torch.relu(scores)
    return {
        "the ReLU is missing: softmax(ReLU(E1 E2^T)) first sets the negative scores to 0 (torch.relu), so "
        "unrelated stations get the score 0, not a negative one.": torch.softmax(scores, dim=-1),
        "the softmax runs over the wrong axis: each row (one station's weights over the others) must sum to "
        "1, so use dim=-1 (or dim=1), not dim=0.": torch.softmax(relu, dim=0),
        "the product is transposed: row i holds E1[i] . E2[j] for every j, that is E1 @ E2.T, not "
        "E2 @ E1.T.": torch.softmax(torch.relu(E2 @ E1.T), dim=-1),
        "the softmax is missing: normalise each row of ReLU(E1 E2^T) with torch.softmax(..., dim=-1).": relu,
        "each row is divided by its sum: the adjacency is a softmax, exp of the scores over the sum of their "
        "exps (torch.softmax), not the scores over their sum.": relu / relu.sum(-1, keepdim=True),
    }


def _check_adjacency_on(fn: Callable[..., Any], E1: Tensor, E2: Tensor, seconds: float) -> None:
    name = "adaptive_adjacency"
    actual = call_on_copies(fn, E1, E2, name=name, seconds=seconds)
    expect_returned(actual, name=name)
    expected = _adjacency(E1, E2)
    if isinstance(actual, Tensor) and actual.shape == expected.shape and not torch.isfinite(
            actual.detach().double()).all() and torch.isfinite(expected).all():
        raise AssertionError(f"`{name}` returned inf or NaN for large scores: exp of a large score overflows. "
                             "torch.softmax subtracts each row's maximum first; use it.")
    mistakes = {h: m for h, m in _adjacency_mistakes(E1, E2).items()
                if m.shape != expected.shape or not torch.allclose(m, expected, atol=1e-5, rtol=1e-4)}
    expect_close(actual, expected, name=f"{name} ({E1.shape[0]} stations)", mistakes=mistakes)


def _embeddings(num_stations: int, embed_size: int, gen: torch.Generator, spread: float = 1.0,
                dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    E1 = spread * torch.randn(num_stations, embed_size, generator=gen, dtype=dtype)
    E2 = spread * torch.randn(num_stations, embed_size, generator=gen, dtype=dtype)
    return E1, E2


def check_adaptive_adjacency_small(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Public check: 5 stations with embeddings of size 3."""
    _check_adjacency_on(fn, *_embeddings(5, 3, torch.Generator().manual_seed(0)), seconds)


def check_adaptive_adjacency_thorough(fn: Callable[..., Any], *, seconds: float = 10.0) -> None:
    """Hidden check: other sizes, one station, float64, large scores (exp would overflow)."""
    gen = torch.Generator().manual_seed(1)
    for num_stations, embed_size in [(12, 10), (7, 1), (1, 4), (30, 6)]:
        _check_adjacency_on(fn, *_embeddings(num_stations, embed_size, gen), seconds)
    _check_adjacency_on(fn, *_embeddings(6, 4, gen, dtype=torch.float64), seconds)
    _check_adjacency_on(fn, *_embeddings(8, 5, gen, spread=12.0), seconds)  # scores in the hundreds
