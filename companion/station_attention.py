"""Attention over stations (chapter 15): predict each station's next reading from
the recent readings of the others.

The query is the target station and the time of day; the keys are the other
stations (who they are and what they read recently); the values are their recent
readings themselves, as deviations from their daily cycle. A station never attends
to itself. With ``adaptive=True`` the weights are instead one learned matrix,
softmax(ReLU(E1 E2^T)), Graph WaveNet's adaptive adjacency (Wu et al. 2019, eq. 5),
the same at every time step.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .attention import DotProductAttention, masked_softmax
from .utils import check_positive_int

__all__ = ["station_deviations", "adaptive_adjacency", "AdaptiveAdjacency",
           "StationAttention"]


def station_deviations(X: Tensor, step: Tensor, profile: Tensor,
                       scale: float) -> Tensor:
    """(reading - daily cycle) / scale, and 0 where the reading is missing (ch. 15).

    Shapes: X (B, num_stations, window) the readings before the target step, step
    (B,) the target's step of the day, profile (steps_per_day, num_stations) ->
    (B, num_stations, window). A missing reading becomes its station's cycle.
    """
    steps_per_day, window = profile.shape[0], X.shape[-1]
    past = step[:, None] - window + torch.arange(window, device=X.device)  # (B, window)
    cycle = profile[past % steps_per_day].transpose(1, 2)  # (B, stations, window)
    return torch.where(X != 0, (X - cycle) / scale, torch.zeros_like(X))


def adaptive_adjacency(E1: Tensor, E2: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """softmax(ReLU(E1 E2^T)) over each row (ch. 15; Graph WaveNet, Wu et al. 2019).

    Shapes: E1, E2 (num_stations, embed_size), mask None or (num_stations,
    num_stations) bool, True = may attend -> weights (num_stations, num_stations);
    row i holds the weights of station i over the stations it reads from.
    """
    _check_embeddings(E1, E2)
    # (stations, stations): 0 for an unrelated pair, > 0 for a related one
    scores = torch.relu(E1 @ E2.T)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    return masked_softmax(scores[None], mask[None])[0]


def _check_embeddings(E1: object, E2: object) -> None:
    if not (isinstance(E1, Tensor) and isinstance(E2, Tensor) and E1.dim() == 2
            and E1.shape == E2.shape):
        shapes = [tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
                  for e in (E1, E2)]
        raise ValueError("E1 and E2 must be 2-D tensors of the same shape "
                         f"(num_stations, embed_size), got {shapes[0]} and {shapes[1]}")


class AdaptiveAdjacency(nn.Module):
    """Learned weights between stations, softmax(ReLU(E1 E2^T)) (ch. 15; Graph WaveNet).

    Shapes: forward(mask None or (num_stations, num_stations) bool) ->
    (num_stations, num_stations). Source embeddings E1 and target embeddings E2 are
    drawn from N(0, 1), as in Graph WaveNet.
    """

    def __init__(self, num_stations: int, embed_size: int = 10) -> None:
        super().__init__()
        check_positive_int("num_stations", num_stations)
        check_positive_int("embed_size", embed_size)
        self.E1 = nn.Parameter(torch.randn(num_stations, embed_size))
        self.E2 = nn.Parameter(torch.randn(num_stations, embed_size))

    def forward(self, mask: Optional[Tensor] = None) -> Tensor:
        return adaptive_adjacency(self.E1, self.E2, mask)


class StationAttention(nn.Module):
    """Each station's next reading from the others' recent readings (chapter 15).

    Shapes: forward(X (B, num_stations, window) readings, 0 = missing; step (B,)
    the step of the day of the target) -> (B, num_stations) predicted readings;
    weights in self.attention_weights (B, num_stations, num_stations). `profile`
    (steps_per_day, num_stations) is the daily cycle (the historical average): the
    model predicts the deviation from it, `scale` the unit of the deviations.
    """

    def __init__(self, profile: Tensor, window: int, *, num_hiddens: int = 16,
                 scale: float = 10.0, adaptive: bool = False) -> None:
        super().__init__()
        _check_profile(profile, window, num_hiddens, scale)
        steps_per_day, S = profile.shape
        self.register_buffer("profile", profile.float().clone())
        self.window, self.scale = window, scale
        self.station = nn.Embedding(S, num_hiddens)  # who is asking, who answers
        # Small: the weights start near uniform, every station gets a hearing.
        nn.init.normal_(self.station.weight, std=0.1)
        self.W_q = nn.Linear(num_hiddens + 2, num_hiddens)  # station + time of day
        # station + recent deviations + which of them were observed
        self.W_k = nn.Linear(num_hiddens + 2 * window, num_hiddens)
        self.attention = DotProductAttention()
        self.adjacency = AdaptiveAdjacency(S) if adaptive else None
        # Which of the pooled steps a station reads its prediction from (its lag).
        self.readout = nn.Parameter(torch.zeros(S, window))
        self.bias = nn.Parameter(torch.zeros(S))
        self.attention_weights: Optional[Tensor] = None

    def forward(self, X: Tensor, step: Tensor) -> Tensor:
        _check_station_inputs(self, X, step)
        B, S, W = X.shape
        # (B, stations, window); a missing reading counts as the daily cycle
        dev = station_deviations(X, step, self.profile, self.scale)
        # (stations, stations): a station never attends to itself
        others = ~torch.eye(S, dtype=torch.bool, device=X.device)
        if self.adjacency is not None:
            weights = self.adjacency(others).expand(B, S, S)  # (B, stations, stations)
            pooled = torch.bmm(weights, dev)  # (B, stations, window)
        else:
            ids = self.station.weight.expand(B, S, -1)  # (B, stations, d)
            phase = 2 * math.pi * step / self.profile.shape[0]  # (B,)
            clock = torch.stack([phase.cos(), phase.sin()], -1)  # (B, 2)
            queries = self.W_q(torch.cat([ids, clock[:, None].expand(B, S, 2)], -1))
            seen = (X != 0).to(dev.dtype)  # (B, stations, window)
            keys = self.W_k(torch.cat([ids, dev, seen], dim=-1))  # (B, stations, d)
            # Queries (B, stations, d) against keys (B, stations, d), values dev.
            pooled = self.attention(queries, keys, dev, others[None])
            weights = self.attention.attention_weights
        self.attention_weights = weights
        deviation = (self.readout * pooled).sum(-1) + self.bias  # (B, stations)
        return self.profile[step] + self.scale * deviation  # (B, stations)


def _check_profile(profile: object, window: int, num_hiddens: int,
                   scale: float) -> None:
    if not isinstance(profile, Tensor) or profile.dim() != 2:
        raise ValueError("profile must be a 2-D tensor (steps_per_day, num_stations), "
                         f"got {getattr(profile, 'shape', type(profile).__name__)}")
    check_positive_int("window", window)
    check_positive_int("num_hiddens", num_hiddens)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")


def _check_station_inputs(model: StationAttention, X: object, step: object) -> None:
    S = model.profile.shape[1]
    if not isinstance(X, Tensor) or X.dim() != 3 or X.shape[1:] != (S, model.window):
        raise ValueError(f"X must be (B, {S}, {model.window}) = (B, num_stations, "
                         f"window), got {getattr(X, 'shape', type(X).__name__)}")
    if (not isinstance(step, Tensor) or step.shape != X.shape[:1]
            or step.is_floating_point()):
        raise ValueError(f"step must be an integer tensor (B,) = ({X.shape[0]},), "
                         f"got {getattr(step, 'shape', type(step).__name__)}")
