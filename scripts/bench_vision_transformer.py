"""Chapter 13's benchmark: the ViT and the small CNN on the 8x8 digits over many seeds,
a ViT without positions and one with 2x2 patches beside them, and the data-amount
curve over several seeds, written as a table (too long for the chapter, which shows
three seeds and one seed per point of the curve).

    python scripts/bench_vision_transformer.py --out _build/vision_transformer.md
    python scripts/bench_vision_transformer.py --seeds 2 --fractions 0.1 --out /tmp/t.md

Every model trains as in the chapter (companion.experiments.vision_transformer); the
training seconds come from companion.measure.time_call, and the table gives them as
fractions of the 30 s ceiling.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("COMPANION_PROGRESS", "0")

from companion.experiments import vision_transformer as vt  # noqa: E402
from companion.tasks.digits import load_digits_split  # noqa: E402

CEILING_S = 30.0
# label -> (kind, model options): the chapter's two models, and the ViT on 2x2 patches.
MODELS = {"vit": ("vit", {}), "cnn": ("cnn", {}),
          "vit, no positions": ("vit", {"positions": False}),
          "vit, 2x2 patches": ("vit", {"patch_size": 2})}


def benchmark(*, seeds: int, curve_seeds: int, fractions: list[float], num_epochs: int,
              device: str) -> dict:
    data = load_digits_split()
    runs = {}
    for label, (kind, options) in MODELS.items():
        r = vt.accuracy_over_seeds([kind], data, num_seeds=seeds, num_epochs=num_epochs,
                                   device=device, progress=False, **options)[kind]
        runs[label] = {"accuracy": r["accuracy"], "seconds": r["seconds"]}
    curve = vt.accuracy_by_data_amount(["vit", "cnn"], data, fractions,
                                       num_seeds=curve_seeds, num_epochs=num_epochs,
                                       device=device, progress=False)
    return {"seeds": seeds, "curve_seeds": curve_seeds, "num_epochs": num_epochs,
            "device": device, "fractions": fractions, "runs": runs, "curve": curve,
            "train_size": len(data.y_train)}


def table(result: dict) -> str:
    lines = [f"{result['seeds']} seeds (0..{result['seeds'] - 1}), "
             f"{result['num_epochs']} epochs, device = {result['device']}", "",
             "| model | mean accuracy | min | max | spread | longest run / 30 s |",
             "|---|---|---|---|---|---|"]
    for label, r in result["runs"].items():
        acc = r["accuracy"]
        lines.append(f"| {label} | {statistics.mean(acc):.4f} | {min(acc):.4f} | "
                     f"{max(acc):.4f} | {max(acc) - min(acc):.4f} | "
                     f"{max(r['seconds']) / CEILING_S:.3f} |")
    lines += ["", f"data amount, mean over seeds 0..{result['curve_seeds'] - 1} "
              "(the same number of optimizer steps at every fraction)", "",
              "| fraction | images | ViT | CNN | CNN - ViT |", "|---|---|---|---|---|"]
    for i, f in enumerate(result["fractions"]):
        v, c = result["curve"]["vit"][i], result["curve"]["cnn"][i]
        lines.append(f"| {f:g} | {round(f * result['train_size'])} | {v:.4f} | {c:.4f} "
                     f"| {c - v:+.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--curve-seeds", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs="+",
                        default=[0.05, 0.1, 0.2, 0.3, 0.5, 1.0])
    parser.add_argument("--num-epochs", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="_build/vision_transformer.md")
    args = parser.parse_args(argv)
    result = benchmark(seeds=args.seeds, curve_seeds=args.curve_seeds,
                       fractions=args.fractions, num_epochs=args.num_epochs,
                       device=args.device)
    text, out = table(result), pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(text)
    return result


if __name__ == "__main__":
    main()
