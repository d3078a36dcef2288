#!/usr/bin/env bash
# The one test command: set up .venv, install the browser the page tests drive and the PostgreSQL
# server the shared-study test starts, check the lint,
# then run the whole test suite (slow tests included). Extra arguments go to pytest.
# BERTFIT_SKIP_BROWSER=1 skips the browser install and the browser tests; BERTFIT_SKIP_POSTGRES=1
# skips the PostgreSQL install and the shared-study test of `bertfit tune`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${BERTFIT_SKIP_BROWSER:-}" != "1" ]; then
    bash scripts/install-browser.sh
fi
if [ "${BERTFIT_SKIP_POSTGRES:-}" != "1" ]; then
    bash scripts/install-postgres.sh
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
