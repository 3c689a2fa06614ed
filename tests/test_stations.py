"""Tests of companion.tasks.stations (chapter 15): the synthetic network, windows, splits and the METR-LA /
PEMS-BAY reader, on small files in the release's format that the tests write."""
import pickle
import struct

import numpy as np
import pytest
import torch

from companion.tasks.stations import (load_graph_data, load_traffic_readings, make_station_data, split_by_day,
                                      station_windows)


def test_station_data_shapes_and_truth():
    data = make_station_data(num_stations=8, num_days=4, steps_per_day=24, num_sources=2, seed=0)
    assert data.series.shape == (96, 8) and data.steps_per_day == 24
    assert not data.parents[:2].any()  # sources have no parents
    assert (data.parents[2:].sum(-1) == 2).all()
    assert not torch.triu(data.parents).any()  # parents come before their children
    torch.testing.assert_close(data.weights[2:].sum(-1), torch.ones(6))
    assert torch.equal(data.weights > 0, data.parents)
    assert (data.lags[:2] == 0).all() and ((data.lags[2:] >= 1) & (data.lags[2:] <= 3)).all()


def test_station_data_is_reproducible_and_seeded():
    a, b, c = (make_station_data(num_days=3, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.series, b.series) and not torch.equal(a.series, c.series)


def test_missing_readings_are_zeros_and_outages_last_a_day():
    data = make_station_data(num_days=200, steps_per_day=12, missing=0.05, outages=0.05, seed=0)
    zero = data.series == 0
    assert 0.07 < zero.float().mean() < 0.13  # 5% + 5% of the days, minus overlaps
    whole_days = zero.reshape(200, 12, -1).all(dim=1)
    assert 0.03 < whole_days.float().mean() < 0.07
    assert (data.series[~zero] >= 1).all()  # a real reading is never 0


def test_a_child_follows_its_parents_with_its_lag():
    data = make_station_data(num_days=30, missing=0.0, outages=0.0, noise=0.0, seed=0)
    cycle = data.series.reshape(30, data.steps_per_day, -1).mean(0).repeat(30, 1)
    d = (data.series - cycle) / 10
    i = 5
    lag = int(data.lags[i])
    predicted = d[:-lag] @ data.weights[i]  # the parents' deviations, lag steps earlier
    corr = torch.corrcoef(torch.stack([predicted, d[lag:, i]]))[0, 1]
    assert corr > 0.95, corr


def test_station_data_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_sources"):
        make_station_data(num_stations=3, num_sources=3)
    with pytest.raises(ValueError, match="missing"):
        make_station_data(missing=1.5)


def test_windows_hold_the_steps_before_the_target():
    series = torch.arange(30.0).reshape(10, 3)  # step t, station j: 3 t + j
    w = station_windows(series, 4, 5)
    assert w.X.shape == (6, 3, 4) and w.Y.shape == (6, 3)
    assert w.X[0, 1].tolist() == [1.0, 4.0, 7.0, 10.0] and w.Y[0, 1] == 13.0
    assert w.step.tolist() == [4, 0, 1, 2, 3, 4] and w.day.tolist() == [0, 1, 1, 1, 1, 1]
    train, test = split_by_day(w, 1)
    assert len(train.Y) == 1 and len(test.Y) == 5 and (test.day == 1).all()
    with pytest.raises(ValueError, match="window"):
        station_windows(series, 10, 5)


# --- the public release's format ---------------------------------------------------------------------------

STAMPS = np.arange("2012-03-01T00:00", "2012-03-01T00:40", np.timedelta64(5, "m"), dtype="datetime64[ns]")
IDS = ["773869", "767541", "767542", "717447"]


def readings():
    values = np.arange(len(STAMPS) * len(IDS), dtype=np.float64).reshape(len(STAMPS), len(IDS))
    values[2, 1] = 0.0  # a missing reading
    return values


def write_fixed_frame(path, values, blocks=((0, 1, 2, 3),), kind=b"datetime64"):
    """A DataFrame in pandas' "fixed" HDF5 layout, as HDFStore writes it (DCRNN's metr-la.h5 was written so)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        g = f.create_group("df")
        g.attrs.update(pandas_type=b"frame", pandas_version=b"0.15.2", encoding=b"UTF-8", errors=b"strict",
                       ndim=2, nblocks=len(blocks), axis0_variety=b"regular", axis1_variety=b"regular")
        g.create_dataset("axis0", data=np.array(IDS, dtype="S6")).attrs.update(kind=b"string", transposed=1)
        g.create_dataset("axis1", data=STAMPS.astype(np.int64)).attrs.update(kind=kind, transposed=1)
        for b, columns in enumerate(blocks):
            g.attrs[f"block{b}_items_variety"] = b"regular"
            g.create_dataset(f"block{b}_items", data=np.array([IDS[c] for c in columns], dtype="S6"))
            g.create_dataset(f"block{b}_values", data=values[:, list(columns)]).attrs["transposed"] = 1


def test_reader_reads_the_fixed_layout(tmp_path):
    path = tmp_path / "metr-la.h5"
    write_fixed_frame(path, readings())
    values, stamps, ids = load_traffic_readings(path)
    assert ids == IDS and values.dtype == torch.float32
    torch.testing.assert_close(values, torch.tensor(readings(), dtype=torch.float32))
    assert (stamps == STAMPS).all() and values[2, 1] == 0


def test_reader_puts_each_block_in_its_columns(tmp_path):
    path = tmp_path / "pems-bay.h5"
    write_fixed_frame(path, readings(), blocks=((3, 1), (0, 2)), kind=b"datetime64[ns]")
    values, _, ids = load_traffic_readings(path)
    torch.testing.assert_close(values, torch.tensor(readings(), dtype=torch.float32))


def test_reader_rejects_a_file_without_the_frame(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="DataFrame"):
        load_traffic_readings(path)


def test_reader_reads_what_pandas_writes(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")  # pandas writes HDF5 through PyTables
    frame = pd.DataFrame(readings(), index=pd.DatetimeIndex(STAMPS), columns=IDS)
    frame.to_hdf(tmp_path / "metr-la.h5", key="df")
    values, stamps, ids = load_traffic_readings(tmp_path / "metr-la.h5")
    assert ids == IDS and (stamps == STAMPS).all()
    torch.testing.assert_close(values, torch.tensor(readings(), dtype=torch.float32))


def test_graph_data_from_a_python3_pickle(tmp_path):
    adj = np.eye(3, dtype=np.float32) + 0.5
    with open(tmp_path / "adj_mx.pkl", "wb") as f:
        pickle.dump([IDS[:3], {s: i for i, s in enumerate(IDS[:3])}, adj], f, protocol=2)
    ids, to_ind, adj_mx = load_graph_data(tmp_path / "adj_mx.pkl")
    assert ids == IDS[:3] and to_ind == {"773869": 0, "767541": 1, "767542": 2}
    torch.testing.assert_close(adj_mx, torch.tensor(adj))


def test_graph_data_from_a_python2_pickle(tmp_path):
    """DCRNN's adj_mx.pkl was pickled by Python 2: its str are bytes, which Python 3 reads only as latin-1."""
    def s(b):
        return b"U" + bytes([len(b)]) + b
    def num(x):
        return b"G" + struct.pack(">d", x)
    stream = (b"\x80\x02](" + b"](" + s(b"a\xe91") + s(b"b2") + b"e"  # sensor ids, one not ASCII
              + b"}(" + s(b"a\xe91") + b"K\x00" + s(b"b2") + b"K\x01u"  # id -> index
              + b"](](" + num(1.0) + num(0.25) + b"e](" + num(0.0) + num(1.0) + b"ee" + b"e.")
    (tmp_path / "adj_mx.pkl").write_bytes(stream)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(stream)
    ids, to_ind, adj_mx = load_graph_data(tmp_path / "adj_mx.pkl")
    assert ids == ["a\xe91", "b2"] and to_ind == {"a\xe91": 0, "b2": 1}
    torch.testing.assert_close(adj_mx, torch.tensor([[1.0, 0.25], [0.0, 1.0]]))


def test_graph_data_rejects_a_matrix_of_the_wrong_size(tmp_path):
    with open(tmp_path / "adj_mx.pkl", "wb") as f:
        pickle.dump([IDS[:2], {IDS[0]: 0, IDS[1]: 1}, np.eye(3)], f)
    with pytest.raises(ValueError, match="adj_mx"):
        load_graph_data(tmp_path / "adj_mx.pkl")


def test_reader_without_h5py_or_tables_says_what_to_install(tmp_path, monkeypatch):
    write_fixed_frame(tmp_path / "metr-la.h5", readings())
    for missing in ("h5py", "tables"):  # as if neither were installed
        monkeypatch.setitem(__import__("sys").modules, missing, None)
    with pytest.raises(ImportError, match="pip install h5py"):
        load_traffic_readings(tmp_path / "metr-la.h5")


def test_reader_without_h5py_reads_through_pandas(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")  # pandas reads HDF5 through PyTables
    frame = pd.DataFrame(readings(), index=pd.DatetimeIndex(STAMPS), columns=IDS)
    frame.to_hdf(tmp_path / "metr-la.h5", key="df")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)  # as if h5py were not installed
    values, stamps, ids = load_traffic_readings(tmp_path / "metr-la.h5")
    assert ids == IDS and (stamps == STAMPS).all()
    torch.testing.assert_close(values, torch.tensor(readings(), dtype=torch.float32))
