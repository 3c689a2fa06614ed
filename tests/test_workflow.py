"""The public workflow (.github/workflows/book.yml): what it installs and what it runs."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "book.yml"
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]


def test_every_job_that_sets_up_installs_torch_from_the_cpu_index_first():
    for name, job in jobs().items():
        runs = [step.get("run", "") for step in job["steps"]]
        setup = next((i for i, run in enumerate(runs) if "scripts/setup.sh" in run), None)
        if setup is None:
            continue
        torch = [i for i, run in enumerate(runs) if '"torch==2.13.0"' in run and CPU_INDEX in run]
        assert torch and torch[0] < setup, f"job {name}: no CPU torch before scripts/setup.sh"


def test_a_job_runs_every_colab_edition_on_colabs_python():
    colab = jobs()["colab"]
    python = next(step["with"]["python-version"] for step in colab["steps"] if "setup-python" in step.get("uses", ""))
    assert python == "3.12"
    assert colab["env"]["COURSE_COLAB_CHAPTERS"] == "all"
    assert "download.pytorch.org/whl/cpu" in colab["env"]["PIP_EXTRA_INDEX_URL"]
    assert any("tests/test_colab_edition.py" in step.get("run", "") for step in colab["steps"])
    assert "colab" in jobs()["deploy"]["needs"]
