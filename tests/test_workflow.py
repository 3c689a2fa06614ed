"""The public workflow (.github/workflows/book.yml) and the GPU check (scripts/gpu_check.sh): what they install
and what they run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_to_run_without_a_gpu_and_says_why():
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "no CUDA device here" in done.stderr


def test_gpu_check_runs_every_chapter_and_the_gpu_tests():
    script = (ROOT / "scripts" / "gpu_check.sh").read_text(encoding="utf-8")
    assert "scripts/chapter_notebooks.sh" in script and "-p tests.chapter_timing" in script and "--nbval-lax" in script
    assert "-m gpu" in script
