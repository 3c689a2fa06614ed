"""Chapter 12's experiments: the memory wall (fresh processes), times, the frame task, the benchmark script."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch

import companion
from companion.experiments import long_sequences as ls
from companion.measure import loglog_slope

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_kind_computes_the_same_attention() -> None:
    outs = {kind: ls.attention_call(kind, 200, d=8, chunk_size=64, window=200)() for kind in ls.ATTENTION_KINDS}
    for kind, out in outs.items():
        assert out.shape == (1, 200, 8)
        assert torch.allclose(out, outs["naive"], atol=1e-5), kind


def test_attention_call_checks_its_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        ls.attention_call("flash", 10)


def test_naive_memory_grows_about_4x_per_doubling_and_chunked_at_most_linearly() -> None:
    """The wall, each point in a fresh process, one at a time (naive at 8192 takes about half a GB)."""
    naive = ls.attention_memory(["naive"], [2048, 4096, 8192])["naive"]
    # Chunked attention adds only tens of MiB, where one fresh process differs from the next by a few MiB:
    # each point is the mean of two processes.
    runs = [ls.attention_memory(["chunked"], [4096, 16384])["chunked"] for _ in range(2)]
    chunked = [sum(r[i] for r in runs) / len(runs) for i in range(2)]
    assert 2 ** loglog_slope([2048, 4096, 8192], naive) >= 3.0, naive
    assert naive[2] / naive[1] >= 3.0, naive
    # At most linear: at most 2x per doubling (two doublings here). Measured 1.16x and 1.54x per doubling in two
    # fresh-clone runs: the fixed part of a fresh process keeps it below 2x, by an amount that varies.
    assert 2 ** loglog_slope([4096, 16384], chunked) <= 2.0, chunked
    assert chunked[1] <= naive[2] / 8, (chunked, naive)  # chunked at 16384 below 1/8 of naive at 8192


def test_times_of_the_readable_and_the_fused_attention() -> None:
    seconds = ls.attention_times(["naive", "chunked", "fused"], [1024, 2048], repeats=3)
    assert all(len(v) == 2 and min(v) > 0 for v in seconds.values())
    assert seconds["chunked"][1] / seconds["fused"][1] < 3.0, seconds  # on this CPU, one thread


def test_make_frame_data_labels_segments_and_adds_noise() -> None:
    X, Y = companion.make_frame_data(8, 50, num_classes=3, min_segment=4, max_segment=6, noise=0.0, seed=3)
    assert X.shape == (8, 50, 3) and Y.shape == (8, 50) and Y.dtype == torch.long
    assert torch.equal(X, torch.nn.functional.one_hot(Y, 3).float())  # no noise: the code itself
    for row in Y:
        change = (row[1:] != row[:-1]).nonzero().flatten().tolist()
        lengths = [b - a for a, b in zip([-1] + change, change + [49])]
        assert all(4 <= length <= 6 for length in lengths[:-1])  # the last segment may be cut
    X2, Y2 = companion.make_frame_data(8, 50, num_classes=3, min_segment=4, max_segment=6, noise=0.0, seed=3)
    assert torch.equal(Y, Y2)
    with pytest.raises(ValueError, match="min_segment"):
        companion.make_frame_data(2, 10, min_segment=5, max_segment=3)
    with pytest.raises(ValueError, match="num_classes"):
        companion.make_frame_data(2, 10, num_classes=1)


def test_a_window_beats_one_frame_on_the_frame_task() -> None:
    options = dict(seq_len=32, min_segment=8, max_segment=16, noise=1.2)
    train, test = companion.make_frame_data(32, **options, seed=1), companion.make_frame_data(64, **options, seed=2)
    masks = {"one": companion.local_attention_mask(32, 0), "window": companion.local_attention_mask(32, 6)}
    errors = ls.error_by_mask(masks, train, test, num_epochs=60, lr=2e-2, seed=0, device="cpu", progress=False)
    assert errors["window"] < errors["one"] - 0.1, errors


def test_the_benchmark_script_writes_its_table(tmp_path, monkeypatch) -> None:
    """The script's table and ratios; its memory numbers stand in (the real ones are measured above)."""
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench_long_sequences.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fake = {"naive": [10.0, 40.0], "chunked": [5.0, 6.0], "fused": [4.0, 4.5]}
    monkeypatch.setattr(bench.ls, "attention_memory", lambda kinds, ns, **_: {k: fake[k] for k in kinds})
    out = tmp_path / "table.md"
    result = bench.main(["--ns", "256", "512", "--repeats", "1", "--out", str(out)])
    text = out.read_text()
    assert "| 512 | 40.0 | 6.0 | 4.5 |" in text and "memory per doubling of n: naive 4.00x" in text
    assert out.with_suffix(".json").exists()
    assert result["chunked_over_naive_memory_at_largest"] == 6.0 / 40.0
    assert set(result["seconds"]) == {"naive", "chunked", "fused"} and min(result["seconds"]["fused"]) > 0
