"""Chapter 12's benchmark: peak memory and time of naive, chunked and fused attention
against n, up to 16k, written as a table (too long for the chapter, which shows a
small run of the same code).

    python scripts/bench_long_sequences.py --out _build/long_sequences.md
    python scripts/bench_long_sequences.py --ns 256 512 --out /tmp/t.md  # a small run

Every number comes from companion.measure: peak memory in a fresh process per
measurement (one at a time: naive attention at n = 16k takes a few GB), time by
time_call. The table's last lines are the ratios the chapter states.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from companion.experiments import long_sequences as ls  # noqa: E402
from companion.measure import loglog_slope  # noqa: E402

KINDS = ("naive", "chunked", "fused")


def benchmark(ns: list[int], *, d: int, chunk_size: int, repeats: int,
              device: str) -> dict:
    memory = ls.attention_memory(KINDS, ns, d=d, chunk_size=chunk_size, device=device)
    times = ls.attention_times(KINDS, ns, d=d, chunk_size=chunk_size, repeats=repeats,
                               device=device)
    per_doubling = {k: 2 ** loglog_slope(ns, [max(v, 1e-3) for v in memory[k]])
                    for k in KINDS}
    return {
        "ns": ns, "d": d, "chunk_size": chunk_size, "device": device,
        "memory_mib": memory, "seconds": times,
        "memory_per_doubling": per_doubling,
        "chunked_over_naive_memory_at_largest": memory["chunked"][-1]
        / memory["naive"][-1],
        "chunked_over_fused_time_at_largest": times["chunked"][-1] / times["fused"][-1],
    }


def table(result: dict) -> str:
    lines = [f"d = {result['d']}, chunk_size = {result['chunk_size']}, "
             f"device = {result['device']}", "",
             "| n | " + " | ".join(f"{k} MiB" for k in KINDS) + " | "
             + " | ".join(f"{k} s" for k in KINDS) + " |",
             "|---" * (1 + 2 * len(KINDS)) + "|"]
    for i, n in enumerate(result["ns"]):
        mem = " | ".join(f"{result['memory_mib'][k][i]:.1f}" for k in KINDS)
        sec = " | ".join(f"{result['seconds'][k][i]:.4f}" for k in KINDS)
        lines.append(f"| {n} | {mem} | {sec} |")
    lines += ["", "memory per doubling of n: " + ", ".join(
        f"{k} {v:.2f}x" for k, v in result["memory_per_doubling"].items()),
        "chunked / naive memory at the largest n: "
        f"{result['chunked_over_naive_memory_at_largest']:.4f}",
        "chunked / fused time at the largest n: "
        f"{result['chunked_over_fused_time_at_largest']:.2f}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+",
                        default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="_build/long_sequences.md")
    args = parser.parse_args(argv)
    result = benchmark(sorted(args.ns), d=args.d, chunk_size=args.chunk_size,
                       repeats=args.repeats, device=args.device)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(result))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
