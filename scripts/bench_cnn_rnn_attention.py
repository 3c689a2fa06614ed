"""Chapter 10's full cost sweep: forward time and peak memory against n for every layer kind.

Runs longer than a chapter may (about a minute on a 2-core CPU), so the chapter shows a small run of the
same functions and this script writes the whole table, as Markdown, with the fitted log-log slopes:

    python scripts/bench_cnn_rnn_attention.py --out bench_cnn_rnn_attention.md [--device cuda]

Time is `companion.time_call` (warm-up, median of repeats), memory `companion.peak_memory` (a fresh process
per run). Only slopes and ratios are meant to be quoted from it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import companion

LINEAR = ["convolution", "gru", "lstm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here (default: print)")
    parser.add_argument("--device", default=str(companion.try_gpu()))
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    lengths = {"attention": [256, 512, 1024, 2048, 4096]}
    lengths.update({kind: [1024, 2048, 4096, 8192] for kind in LINEAR})
    rows = ["| layer | what | n | relative to the first n | slope |", "| --- | --- | --- | --- | --- |"]
    summary = {}
    for kind in companion.COST_KINDS:
        times = companion.time_against_length([kind], lengths[kind], d=args.d, batch_size=args.batch_size,
                                               device=args.device, repeats=5)[kind]
        memory = companion.memory_against_length([kind], lengths[kind], d=args.d, batch_size=args.batch_size,
                                                 device=args.device)[kind]
        for what, values in [("forward time", times), ("peak memory", memory)]:
            slope = companion.loglog_slope(lengths[kind], [max(v, 1e-9) for v in values])
            summary[kind, what] = slope
            ratios = ", ".join(f"{v / values[0]:.2f}" if values[0] > 0 else "-" for v in values)
            rows.append(f"| {kind} | {what} | {lengths[kind]} | {ratios} | {slope:.2f} |")
    text = (f"Device {args.device}, d = {args.d}, batch {args.batch_size}.\n\n" + "\n".join(rows) + "\n")
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
        print(text)


if __name__ == "__main__":
    main()
