"""Traffic stations (chapter 15): synthetic readings whose dependency structure is
known, windows and splits by day, and a reader for the public METR-LA / PEMS-BAY
release.

The synthetic network is laid out like a road network: a few source
stations whose deviation from their daily cycle wanders on its own, and downstream
stations whose deviation is a lagged mix of a few upstream (parent) stations' plus
noise. Missing readings are zeros, as in the public release: isolated ones, and
whole days when a sensor was down.

The release (DCRNN, Li et al. 2018) holds ``metr-la.h5`` / ``pems-bay.h5``, a pandas
DataFrame written by ``HDFStore`` in its "fixed" layout under the key ``df`` (a
timestamp index of 5-minute steps, one column per sensor id, 0 for missing), and
``adj_mx.pkl``, a pickled list ``[sensor_ids, sensor_id_to_ind, adj_mx]``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..utils import check_positive_int

__all__ = [
    "StationData", "make_station_data", "StationWindows", "station_windows",
    "split_by_day", "load_traffic_readings", "load_graph_data",
]


class StationData(NamedTuple):
    """Readings of a station network and the truth behind them (chapter 15).

    Shapes: series (num_steps, stations), 0 = missing; parents (num_stations,
    num_stations) bool, parents[i, j] True when j is a parent of i; weights the same
    shape, the mixing weight of parent j in station i (each child's row sums to 1);
    lags (stations,) the steps by which a child lags its parents (0 for sources).
    """

    series: Tensor
    parents: Tensor
    weights: Tensor
    lags: Tensor
    steps_per_day: int


def make_station_data(
    num_stations: int = 12, num_days: int = 60, steps_per_day: int = 48,
    num_sources: int = 3, num_parents: int = 2, max_lag: int = 3,
    noise: float = 0.3, persistence: float = 0.5, missing: float = 0.02,
    outages: float = 0.01, seed: int = 0,
) -> StationData:
    """The readings of a synthetic station network, and its true parents (ch. 15).

    Shapes: -> StationData with series (num_days * steps_per_day, num_stations).
    A source's deviation d is AR(1), d(t) = persistence d(t-1) + e(t) with unit
    variance, and station i's is
    d_i(t) = sum_j w_ij d_j(t - lag_i) + noise * e_i(t) over its parents j, which
    come before it. Reading = daily cycle + 10 d; a fraction `missing` of the
    readings, and of the station-days `outages`, are recorded as 0.
    """
    _check_station_args(num_stations, num_days, steps_per_day, num_sources,
                        num_parents, max_lag, noise, persistence, missing, outages)
    gen = torch.Generator().manual_seed(seed)
    S, T = num_stations, num_days * steps_per_day
    innovation = (1 - persistence**2) ** 0.5  # the sources' deviations have variance 1
    parents, weights, lags = _random_graph(S, num_sources, num_parents, max_lag, gen)
    d = torch.zeros(T, S)
    for t in range(1, T):
        d[t, :num_sources] = persistence * d[t - 1, :num_sources] + innovation * (
            torch.randn(num_sources, generator=gen))
        for i in range(num_sources, S):  # parents come first: the order is causal
            lagged = d[max(t - int(lags[i]), 0)]  # (stations,)
            d[t, i] = weights[i] @ lagged + noise * torch.randn((), generator=gen)
    series = (_daily_cycle(T, S, steps_per_day, gen) + 10 * d).clamp(min=1.0)
    dropped = torch.rand(T, S, generator=gen) < missing  # (num_steps, stations)
    down = torch.rand(num_days, S, generator=gen) < outages  # whole station-days
    dropped |= down.repeat_interleave(steps_per_day, dim=0)
    return StationData(series.masked_fill(dropped, 0.0), parents, weights, lags,
                       steps_per_day)


def _random_graph(S: int, num_sources: int, num_parents: int, max_lag: int,
                  gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    weights, lags = torch.zeros(S, S), torch.zeros(S, dtype=torch.long)
    for i in range(num_sources, S):
        k = min(num_parents, i)
        chosen = torch.randperm(i, generator=gen)[:k]  # parents among earlier stations
        share = 0.5 + torch.rand(k, generator=gen)  # no parent negligible
        weights[i, chosen] = share / share.sum()
        lags[i] = int(torch.randint(1, max_lag + 1, (), generator=gen))
    return weights > 0, weights, lags


def _daily_cycle(T: int, S: int, steps_per_day: int, gen: torch.Generator) -> Tensor:
    """Two rush hours a day, each station with its own level and amplitude."""
    hours = torch.arange(T) % steps_per_day * 24.0 / steps_per_day  # (num_steps,)
    morning, evening = ((hours - 8.0) / 1.5) ** 2, ((hours - 17.5) / 2.0) ** 2
    peaks = torch.exp(-morning) + torch.exp(-evening)
    level = 40 + 20 * torch.rand(S, generator=gen)  # (stations,)
    amplitude = 20 + 20 * torch.rand(S, generator=gen)
    return level + amplitude * peaks[:, None]  # (num_steps, stations)


def _check_station_args(num_stations, num_days, steps_per_day, num_sources,
                        num_parents, max_lag, noise, persistence, missing,
                        outages) -> None:
    for name, value in (("num_stations", num_stations), ("num_days", num_days),
                        ("steps_per_day", steps_per_day), ("num_sources", num_sources),
                        ("num_parents", num_parents), ("max_lag", max_lag)):
        check_positive_int(name, value)
    if num_sources >= num_stations:
        raise ValueError(f"num_sources must be below num_stations ({num_stations}), "
                         f"got {num_sources}")
    if not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    for name, p in (("persistence", persistence), ("missing", missing),
                    ("outages", outages)):
        if not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")


class StationWindows(NamedTuple):
    """Input windows and targets (chapter 15).

    Shapes: X (N, stations, window) the readings at t - window .. t - 1; Y (N,
    num_stations) the readings at t; step (N,) t's step of the day; day (N,) its day.
    """

    X: Tensor
    Y: Tensor
    step: Tensor
    day: Tensor


def station_windows(series: Tensor, window: int, steps_per_day: int) -> StationWindows:
    """Every window of `window` steps and the step after it (chapter 15).

    Shapes: series (num_steps, stations) -> StationWindows with N = num_steps -
    window. Step 0 of the series is the first step of a day.
    """
    check_positive_int("window", window)
    check_positive_int("steps_per_day", steps_per_day)
    if not isinstance(series, Tensor) or series.dim() != 2 or len(series) <= window:
        shape = tuple(series.shape) if isinstance(series, Tensor) else type(series)
        raise ValueError("series must be a 2-D tensor (num_steps, stations) with "
                         f"more than window = {window} steps, got {shape}")
    t = torch.arange(window, len(series))  # (N,) the step each window predicts
    X = series.unfold(0, window, 1)[:-1]  # (N, stations, window)
    return StationWindows(X, series[t], t % steps_per_day, t // steps_per_day)


def split_by_day(windows: StationWindows,
                 train_days: int) -> tuple[StationWindows, StationWindows]:
    """The windows whose target falls before day `train_days`, and the rest (ch. 15).

    Held-out days come after the training days, as in the public benchmarks.
    """
    check_positive_int("train_days", train_days)
    early = windows.day < train_days  # (N,)
    return (StationWindows(*(x[early] for x in windows)),
            StationWindows(*(x[~early] for x in windows)))


def load_traffic_readings(path: str | Path,
                          key: str = "df") -> tuple[Tensor, np.ndarray, list[str]]:
    """Readings of the public METR-LA / PEMS-BAY release (chapter 15).

    Shapes: -> readings (num_steps, stations) float32 with 0 = missing, the
    timestamps (num_steps,) as numpy datetime64, and the sensor ids as strings. Reads
    pandas' "fixed" HDF5 layout with h5py, or with pandas where h5py is missing
    (pandas needs PyTables, ``tables``, for that).
    """
    try:
        import h5py
    except ImportError:
        return _read_with_pandas(path, key)
    with h5py.File(path, "r") as f:
        group = _frame_group(f, key, path)
        ids = [_text(x) for x in group["axis0"][:]]
        stamps = _timestamps(group["axis1"])
        readings = np.zeros((len(stamps), len(ids)), dtype=np.float32)
        position = {sensor: j for j, sensor in enumerate(ids)}
        for b in range(int(group.attrs["nblocks"])):
            columns = [position[_text(x)] for x in group[f"block{b}_items"][:]]
            readings[:, columns] = group[f"block{b}_values"][:]  # (num_steps, columns)
    return torch.from_numpy(readings), stamps, ids


def _frame_group(f, key: str, path):
    if key not in f or _text(f[key].attrs.get("pandas_type", b"")) != "frame":
        raise ValueError(f"{path} holds no pandas DataFrame under the key {key!r} in "
                         "the fixed layout (DataFrame.to_hdf(path, key=key))")
    return f[key]


def _text(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _timestamps(axis) -> np.ndarray:
    kind = _text(axis.attrs.get("kind", b""))
    if not kind.startswith("datetime64"):
        raise ValueError(f"the index must hold timestamps (datetime64), got {kind!r}")
    unit = kind[len("datetime64["):-1] if "[" in kind else "ns"  # older pandas: ns
    return axis[:].astype(f"datetime64[{unit}]")


def _read_with_pandas(path, key: str) -> tuple[Tensor, np.ndarray, list[str]]:
    try:
        import pandas as pd
        frame = pd.read_hdf(path, key)
    except ImportError as err:
        raise ImportError("reading metr-la.h5 / pems-bay.h5 needs h5py (pip install "
                          "h5py), or pandas with PyTables (pip install tables)"
                          ) from err
    readings = torch.tensor(frame.to_numpy(dtype=np.float32))
    return readings, frame.index.to_numpy(), [str(c) for c in frame.columns]


def load_graph_data(path: str | Path) -> tuple[list[str], dict[str, int], Tensor]:
    """The release's adj_mx.pkl: sensor ids, id -> column, adjacency (chapter 15).

    Shapes: -> adj_mx (num_stations, num_stations) float32. The file is a pickle:
    load only files you trust. Written by Python 2, it needs latin-1 (DCRNN's
    load_pickle does the same).
    """
    with open(path, "rb") as f:
        try:
            sensor_ids, sensor_id_to_ind, adj_mx = pickle.load(f)
        except UnicodeDecodeError:
            f.seek(0)
            sensor_ids, sensor_id_to_ind, adj_mx = pickle.load(f, encoding="latin1")
    ids = [_text(s) for s in sensor_ids]
    to_ind = {_text(s): int(j) for s, j in sensor_id_to_ind.items()}
    adj = torch.as_tensor(np.asarray(adj_mx, dtype=np.float32))
    if adj.shape != (len(ids), len(ids)):
        raise ValueError(f"adj_mx must be ({len(ids)}, {len(ids)}) for {len(ids)} "
                         f"sensors, got {tuple(adj.shape)}")
    return ids, to_ind, adj
