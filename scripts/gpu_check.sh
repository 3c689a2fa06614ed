#!/usr/bin/env bash
# The course on a GPU: every chapter executed under nbval on CUDA (companion.try_gpu picks the GPU), with each
# chapter's time printed, then every test marked `gpu` (skipped, visibly, where there is no CUDA device).
# Run it on a machine with an NVIDIA GPU after the README's set-up: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device here: scripts/gpu_check.sh checks the course on a GPU')"
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export COMPANION_PROGRESS=0 PYTHONHASHSEED=0
bash scripts/chapter_notebooks.sh "$work/notebooks"
status=0
python -m pytest --rootdir . -c pyproject.toml -p tests.chapter_timing "$work/notebooks" --nbval-lax -q "$@" || status=$?
python -m pytest -q -m gpu -rs tests --ignore=tests/fixtures "$@" || status=$?
exit $status
