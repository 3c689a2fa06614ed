"""scripts/seed_sweep.py: chapters re-executed with other training seeds report the checks that stop holding."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("seed_sweep", ROOT / "scripts" / "seed_sweep.py")
seed_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_sweep)


def test_reseed_changes_training_seeds_and_keeps_data_seeds():
    text = "\n".join([
        "companion.set_seed(0)",
        "data = companion.make_date_data(n_train=10, seed=0)",
        "losses = companion.train_seq2seq(net, data.train, vocab, seed=0, device=device)",
        "other = f(seed=00, device=device)",
    ])
    assert seed_sweep.reseed(text, 7).split("\n") == [
        "companion.set_seed(7)",
        "data = companion.make_date_data(n_train=10, seed=0)",
        "losses = companion.train_seq2seq(net, data.train, vocab, seed=7, device=device)",
        "other = f(seed=00, device=device)",
    ]


def test_sweep_reports_the_seed_whose_check_fails(capsys):
    chapter = ROOT / "tests" / "fixtures" / "seeded_chapter.md"
    assert seed_sweep.main([str(chapter), "--seeds", "0", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("seeded_chapter  seed 0: ok (2 passed")
    assert out[1].startswith("seeded_chapter  seed 1: FAILED (1 failed, 1 passed")
    assert out[2].startswith("    Cell 1, line 1: assert x < 0.6, x  ->  "), out[2]
    assert out[2].endswith("AssertionError: 0.7576315999031067"), out[2]
    assert len(out) == 3


def test_sweep_passes_when_every_seed_holds(capsys):
    assert seed_sweep.main([str(ROOT / "tests" / "fixtures" / "seeded_chapter.md"), "--seeds", "0", "3"]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == [
        "seeded_chapter  seed 0", "seeded_chapter  seed 3"]
