#!/usr/bin/env bash
# Runs every check of the course: Colab editions up to date, companion unit tests, grading, the Colab edition in a
# fresh environment, the strict book build with a browser looking at every chapter, and every chapter notebook
# executed under nbval (with each chapter's execution time against its budget).
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPANION_PROGRESS=0 PYTHONHASHSEED=0

python -m course.notebooks --check

nbdir=$(mktemp -d)
trap 'rm -rf "$nbdir"' EXIT
for md in chapters/[0-9][0-9]_*.md; do
    jupytext --quiet --to ipynb --set-kernel python3 -o "$nbdir/$(basename "${md%.md}").ipynb" "$md"
done

python -m pytest --rootdir . -c pyproject.toml -p tests.chapter_timing --durations=10 "$@" tests "$nbdir" --nbval-lax --ignore=tests/fixtures
