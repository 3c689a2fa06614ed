"""The Colab edition works where only Colab's packages are installed.

A fresh virtual environment (no system site packages) gets what Colab
preinstalls: torch, numpy, matplotlib, tqdm, ipykernel, ipywidgets. In a
kernel of that environment we run the edition's set-up cell, which must install
the companion package (from COMPANION_SOURCE, here a copy of this checkout) and
otter-grader, then the chapter's imports, the reference solutions and every
``grader.check`` cell: all public checks must pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

from course import notebooks

REPO = Path(__file__).resolve().parent.parent
# Colab's preinstalled packages that the course uses. Where PIP_EXTRA_INDEX_URL names PyTorch's CPU wheel index (the
# public workflow's Colab job sets it), pip takes torch's CPU build from there.
COLAB_PACKAGES = ["torch==2.13.0", "numpy", "matplotlib", "tqdm", "ipykernel", "ipywidgets", "scikit-learn",
                  "networkx"]


def colab_chapters() -> list[str]:
    """The chapters whose edition is run: chapter 2 by default (the test run's share), every chapter with
    COURSE_COLAB_CHAPTERS=all (the public workflow's Colab job, on Colab's Python), or a comma-separated list."""
    chosen = os.environ.get("COURSE_COLAB_CHAPTERS", "02_nonparametric_pooling")
    return notebooks.toc_chapters(REPO) if chosen == "all" else [s.strip() for s in chosen.split(",") if s.strip()]


def checkout_copy(dest: Path) -> Path:
    """What pip needs to build the companion package, copied so the build leaves the checkout alone."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "companion", dest / "companion", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def colab_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh virtual environment with Colab's packages and nothing of the course, and a kernel spec for it.
    Each chapter's test installs the course into a copy of it, as a learner's runtime would."""
    root = tmp_path_factory.mktemp("colab")
    venv = root / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling torch's many modules is most of the install time, and Colab's are there
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", *COLAB_PACKAGES], check=True)
    return root, venv


@pytest.mark.slow
@pytest.mark.parametrize("stem", colab_chapters())
def test_colab_edition_installs_what_is_missing_and_passes_its_checks(
    stem: str, colab_venv: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    timings: dict[str, float] = {}
    start = time.monotonic()
    venv = tmp_path / "colab"
    # A copy per chapter (symlinks kept: the interpreter), so one chapter's installs do not serve the next.
    shutil.copytree(colab_venv[1], venv, symlinks=True)
    python = venv / "bin" / "python"
    timings["venv with Colab's packages"] = time.monotonic() - start
    missing = subprocess.run([str(python), "-c", "import companion"], capture_output=True, cwd=tmp_path)
    assert missing.returncode != 0, "the fresh environment must not see the checkout's companion"
    missing = subprocess.run([str(python), "-c", "import otter"], capture_output=True, cwd=tmp_path)
    assert missing.returncode != 0

    kernels = tmp_path / "kernels"
    (kernels / "colab").mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Colab-like", "language": "python"}
    (kernels / "colab" / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("COMPANION_SOURCE", str(checkout_copy(tmp_path / "checkout")))

    edition = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    setup = edition.cells[0]
    chapter = jupytext.read(REPO / "chapters" / f"{stem}.md")
    entries = notebooks.parse_chapter(chapter, stem)
    imports = next(e for e in entries if isinstance(e, notebooks.Unit) and e.kind == "code")
    cells = [setup, nbformat.v4.new_code_cell(
        "import companion, otter\n"
        "print(companion.__file__)\n"
        "print(otter.__version__)"
    ), nbformat.v4.new_code_cell(imports.source)]
    questions = [e for e in entries if isinstance(e, notebooks.Question)]
    for q in questions:
        cells += [nbformat.v4.new_code_cell(u.source) for u in q.solution if u.kind == "code"]
        cells.append(nbformat.v4.new_code_cell(f'grader.check("{q.name}")'))
    names = [q.name for q in questions]
    cells.append(nbformat.v4.new_code_cell(
        f"results = {{name: grader.check(name) for name in {names!r}}}\n"
        "failed = [name for name, r in results.items() if not r.passed_all]\n"
        "assert not failed, f'public checks failed: {failed}'\n"
        "print('all public checks passed:', sorted(results))"
    ))
    nb = nbformat.v4.new_notebook(cells=cells, metadata=edition.metadata)
    km = KernelManager(kernel_name="colab", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    run_start = time.monotonic()
    NotebookClient(nb, km=km, timeout=900, resources={"metadata": {"path": str(tmp_path)}}).execute()
    timings["set-up cell, imports and checks"] = time.monotonic() - run_start
    timings["total"] = time.monotonic() - start
    print("Colab edition test timings (s):", {k: round(v, 1) for k, v in timings.items()})

    installed = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert str(venv) in installed, f"companion was not installed into the fresh environment: {installed}"
    assert installed.strip().endswith("7.0.0")
    final = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"all public checks passed: {sorted(names)}" in final
    for cell in nb.cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    shown = json.dumps([c.outputs for c in nb.cells if c.source.startswith("grader.check")])
    assert shown.count("All test cases passed") == len(names)
