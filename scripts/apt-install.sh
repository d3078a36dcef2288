#!/usr/bin/env bash
# Install Debian packages that some tests need, for the install-*.sh scripts:
#   apt-install.sh NAME PURPOSE SKIP_VARIABLE PACKAGE...
# As root it runs apt-get directly; otherwise it says so and asks through sudo; with no sudo it
# says what to run (or which variable skips those tests) and exits 1.
set -euo pipefail
name=$1 purpose=$2 skip=$3
shift 3
packages="$*"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "$name: the $purpose need Debian's $packages, and installing it needs root:" >&2
        echo "run 'apt-get install -y $packages' as root (or set $skip=1 to skip those tests)." >&2
        exit 1
    fi
    echo "$name: installing Debian's $packages for the $purpose needs root;" \
        "asking through sudo (set $skip=1 to skip those tests instead)."
    sudo="sudo"
else
    echo "$name: installing Debian's $packages for the $purpose (apt-get)."
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086  # the package list is meant to split
$sudo apt-get install -y -q $packages
