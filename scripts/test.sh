#!/usr/bin/env bash
# Runs every check of the course: every chapter notebook executed under nbval (with each chapter's execution time
# against its budget), the companion unit tests, Colab editions up to date, grading, the Colab edition in a fresh
# environment, and the strict book build with a browser looking at every chapter.
#
# Each chapter is executed once: nbval runs first (its notebooks come first on the command line, and pytest keeps
# that order), tests/executed_chapters.py stores every chapter nbval ran cleanly in $COURSE_EXECUTED_CACHE, and the
# book build in tests/test_browser.py takes the outputs from there (see _ext/course_book.py).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"; echo "test.sh took $((SECONDS - start)) s"' EXIT
export COMPANION_PROGRESS=0 PYTHONHASHSEED=0 COURSE_EXECUTED_CACHE="$work/executed"

# The chapters as notebooks for nbval.
bash scripts/chapter_notebooks.sh "$work/notebooks"

python -m pytest --rootdir . -c pyproject.toml -p tests.chapter_timing -p tests.executed_chapters --durations=10 \
    "$@" "$work/notebooks" tests --nbval-lax --ignore=tests/fixtures
