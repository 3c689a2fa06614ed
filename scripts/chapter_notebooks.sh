#!/usr/bin/env bash
# Writes every chapter as a notebook into the folder $1, for nbval (scripts/test.sh, scripts/gpu_check.sh): copied,
# then converted by one jupytext process (one process per file costs about 1 s each).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "$1"
cp chapters/[0-9][0-9]_*.md "$1/"
jupytext --quiet --to ipynb --set-kernel python3 "$1"/*.md
rm "$1"/*.md
