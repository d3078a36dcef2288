#!/usr/bin/env bash
# Install the PostgreSQL server that the shared-study tests of `bertfit tune` start as their own
# cluster (Debian's `postgresql`: initdb, pg_ctl and postgres under /usr/lib/postgresql/N/bin;
# the tests start and stop it themselves, no service is used). Does nothing when a server is
# already installed. scripts/apt-install.sh installs it
# (apt-get as root, else through sudo).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
exec bash "$(dirname "$0")/apt-install.sh" install-postgres "shared-study tests" BERTFIT_SKIP_POSTGRES postgresql
