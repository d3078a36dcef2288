#!/usr/bin/env bash
# Create (or reuse) .venv and install bertfit with its dependencies and test tools.
# Idempotent: a second run finds everything installed and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# torch first, pinned: the CPU wheel, never a CUDA download pulled in by another requirement.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
.venv/bin/python -c "import torch, bertfit; print(f'bertfit {bertfit.__version__} ready (torch {torch.__version__})')"
