#!/usr/bin/env bash
# Install the PostgreSQL server that the shared-study tests of `bertfit tune` start as their own
# cluster (Debian's `postgresql`: initdb, pg_ctl and postgres under /usr/lib/postgresql/N/bin;
# the tests start and stop it themselves, no service is used). Does nothing when a server is
# already installed. As root it runs apt-get directly; otherwise it says so and asks through sudo.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
packages="postgresql"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-postgres: the shared-study tests need Debian's $packages, and installing it" >&2
        echo "needs root: run 'apt-get install -y $packages' as root (or set BERTFIT_SKIP_POSTGRES=1" >&2
        echo "to skip those tests)." >&2
        exit 1
    fi
    echo "install-postgres: installing Debian's $packages for the shared-study tests needs root;" \
        "asking through sudo (set BERTFIT_SKIP_POSTGRES=1 to skip those tests instead)."
    sudo="sudo"
else
    echo "install-postgres: installing Debian's $packages for the shared-study tests (apt-get)."
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086  # the package list is meant to split
$sudo apt-get install -y -q $packages
