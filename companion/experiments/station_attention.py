"""Chapter 15's experiment: attention over stations against three baselines, and
the learned weights against the true parents.

Baselines: the last reading (of the station itself), the historical average of its
step of the day, and a linear regression on the recent readings of all stations.
Every error is a masked one (companion.metrics): a 0 reading is missing.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..metrics import masked_mae, masked_mape, masked_rmse
from ..station_attention import StationAttention, station_deviations
from ..tasks.stations import StationWindows
from ..training import train
from ..utils import check_positive_int, one_thread_on_cpu, set_seed, try_gpu

__all__ = [
    "historical_average", "last_value", "linear_regression_baseline",
    "train_station_attention", "predict_stations", "masked_scores", "daily_mae",
    "parent_weight", "permutation_change",
]


def historical_average(data: StationWindows, steps_per_day: int) -> Tensor:
    """The mean observed reading of each station at each step of the day (ch. 15).

    Shapes: data.Y (N, stations), data.step (N,) -> (steps_per_day, stations). A
    step never observed gets the station's mean over the day.
    """
    observed = (data.Y != 0).float()  # (N, stations)
    slots = torch.nn.functional.one_hot(data.step, steps_per_day).float().T
    # slots (steps_per_day, N): which step of the day each target falls on
    total, count = slots @ (data.Y * observed), slots @ observed
    overall = total.sum(0) / count.sum(0).clamp(min=1)  # (stations,)
    return torch.where(count > 0, total / count.clamp(min=1), overall)


def last_value(X: Tensor, fallback: Tensor) -> Tensor:
    """Each station's last observed reading in its window, else `fallback` (ch. 15).

    Shapes: X (N, stations, window), fallback (N, stations) -> (N, stations).
    """
    observed = X != 0  # (N, stations, window)
    window = X.shape[-1]
    # The index of the last observed step: the largest position with a reading.
    last = torch.where(observed, torch.arange(window), -1).amax(-1)  # (N, stations)
    picked = X.gather(-1, last.clamp(min=0)[..., None])[..., 0]
    return torch.where(last >= 0, picked, fallback)


def linear_regression_baseline(train_data: StationWindows, test_data: StationWindows,
                               profile: Tensor, *, scale: float = 10.0,
                               ridge: float = 1e-3) -> Tensor:
    """Least squares of each station's deviation on every station's window (ch. 15).

    Shapes: profile (steps_per_day, stations) -> test predictions (N, stations).
    One regression per station, on all stations' deviations (its own included),
    fitted on the training targets that were observed.
    """
    def features(data: StationWindows) -> Tensor:
        # (N, stations, window) -> (N, stations * window + 1), the 1 for the intercept
        dev = station_deviations(data.X, data.step, profile, scale)
        return torch.cat([dev.flatten(1), torch.ones(len(dev), 1)], dim=1)

    F_train, F_test = features(train_data), features(test_data)
    target = (train_data.Y - profile[train_data.step]) / scale  # (N, stations)
    eye = ridge * torch.eye(F_train.shape[1])
    predictions = []
    for i in range(target.shape[1]):
        rows = train_data.Y[:, i] != 0  # only observed targets teach
        A = F_train[rows]
        beta = torch.linalg.solve(A.T @ A + eye, A.T @ target[rows, i])
        predictions.append(F_test @ beta)
    return profile[test_data.step] + scale * torch.stack(predictions, dim=1)


def train_station_attention(
    data: StationWindows, profile: Tensor, *, adaptive: bool = False,
    num_epochs: int = 300, lr: float = 0.03, restarts: int = 1, seed: int = 0,
    device: Optional[torch.device | str] = None, progress: Optional[bool] = None,
) -> tuple[StationAttention, list[float]]:
    """Full-batch Adam on the masked MAE of the next readings (chapter 15).

    Shapes: data.X (N, stations, window), profile (steps_per_day, stations) -> the
    model and its per-epoch training losses. With restarts > 1, trains from seeds
    seed, seed + 1, ... and keeps the model with the lowest final training loss: a
    softmax can settle on a station that merely resembles the parent.
    """
    check_positive_int("restarts", restarts)
    device = torch.device(device) if device is not None else try_gpu()
    best: Optional[tuple[StationAttention, list[float]]] = None
    for run in range(restarts):
        set_seed(seed + run)
        model = StationAttention(profile, data.X.shape[-1], adaptive=adaptive)
        with one_thread_on_cpu(device):  # a small model: one CPU thread is faster
            losses = train(model, masked_mae, (data.X, data.step), data.Y,
                           num_epochs=num_epochs, lr=lr, optimizer="adam",
                           progress=progress, device=device)
        if best is None or losses[-1] < best[1][-1]:
            best = (model, losses)
    return best


def predict_stations(model: StationAttention, X: Tensor,
                     step: Tensor) -> tuple[Tensor, Tensor]:
    """The model's predictions and attention weights, on the CPU (chapter 15).

    Shapes: X (N, stations, window), step (N,) -> (N, stations) and (N, stations,
    stations).
    """
    device = next(model.parameters()).device
    with torch.no_grad():
        predictions = model(X.to(device), step.to(device))
    return predictions.cpu(), model.attention_weights.cpu()


def masked_scores(predictions: Tensor, Y: Tensor) -> dict[str, float]:
    """MAE, RMSE and MAPE (a fraction) over the observed readings (chapter 15)."""
    return {name: fn(predictions, Y).item() for name, fn in
            (("MAE", masked_mae), ("RMSE", masked_rmse), ("MAPE", masked_mape))}


def daily_mae(predictions: Tensor, Y: Tensor, day: Tensor) -> Tensor:
    """The masked MAE of each station on each day: NaN on a day it read nothing.

    Shapes: predictions, Y (N, stations), day (N,) -> (days, stations), one row per
    day present in `day`, in order.
    """
    days = torch.unique(day)
    return torch.stack([
        torch.stack([masked_mae(predictions[day == d, i], Y[day == d, i])
                     for i in range(Y.shape[1])]) for d in days])


def parent_weight(weights: Tensor, parents: Tensor) -> Tensor:
    """The fraction of each station's attention on its true parents (chapter 15).

    Shapes: weights (N, stations, stations), parents (stations, stations) bool ->
    (stations,), averaged over the N samples; NaN for a station without parents.
    """
    on_parents = (weights * parents.to(weights.device)).sum(-1).mean(0)  # (stations,)
    has_parents = parents.any(dim=-1).to(weights.device)
    return torch.where(has_parents, on_parents, torch.nan)


def permutation_change(model: StationAttention, data: StationWindows,
                       parents: Tensor, *, parents_too: bool = False,
                       seed: int = 0) -> Tensor:
    """How much each child's prediction moves when the readings of the stations
    that are not its parents are permuted among them (chapter 15).

    Shapes: parents (stations, stations) bool -> (stations,) the mean |change| of
    each station's prediction; NaN for a station without parents. With
    parents_too, the parents' readings are shuffled in with the others'.
    """
    gen = torch.Generator().manual_seed(seed)
    before, _ = predict_stations(model, data.X, data.step)
    change = torch.full((parents.shape[0],), torch.nan)
    for i in torch.nonzero(parents.any(dim=-1)).flatten().tolist():
        others = torch.nonzero(~parents[i] | parents_too).flatten()
        others = others[others != i]  # the target's own window stays
        shuffled = others[torch.randperm(len(others), generator=gen)]
        X = data.X.clone()
        X[:, others] = data.X[:, shuffled]
        after, _ = predict_stations(model, X, data.step)
        change[i] = (after[:, i] - before[:, i]).abs().mean()
    return change
