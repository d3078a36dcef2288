#!/usr/bin/env bash
# Set up the environment, then fine-tune the packaged all-MiniLM-L6-v2 on GLUE MRPC into runs/mrpc.
# Extra arguments go to `bertfit train` (for example --max-steps 50 --overwrite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/bertfit train --task mrpc --output runs/mrpc "$@"
