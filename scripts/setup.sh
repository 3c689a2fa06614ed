#!/usr/bin/env bash
# Installs everything needed to build the book and run the tests: PyTorch (the CPU build, unless a torch is
# already installed), the Python requirements, the companion package (editable) and MathJax (served locally).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install "torch==2.13.0"
fi
python -m pip install -r requirements.txt
# d2l, for the parity tests (tests/test_d2l_parity.py): its own pins are for old Pythons, so without them.
python -m pip install --no-deps "d2l==1.0.3"
python -m pip install --no-deps -e .
npm ci --no-audit --no-fund
echo "Set-up done. Build the book with: jupyter-book build . -W -n --keep-going"
