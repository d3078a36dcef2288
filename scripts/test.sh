#!/usr/bin/env bash
# The one test command: set up .venv, install the browser the page tests drive, check the lint,
# then run the whole test suite (slow tests included). Extra arguments go to pytest.
# BERTFIT_SKIP_BROWSER=1 skips the browser install and the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${BERTFIT_SKIP_BROWSER:-}" != "1" ]; then
    bash scripts/install-browser.sh
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
