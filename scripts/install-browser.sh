#!/usr/bin/env bash
# Install the headless browser that the try-it page's tests drive: Debian's `chromium` and
# `chromium-driver` (Selenium is given /usr/bin/chromedriver; nothing is downloaded at test
# time). Does nothing when both are already installed. As root it runs apt-get directly;
# otherwise it says so and asks through sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
packages="chromium chromium-driver"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-browser: the browser tests need Debian's $packages, and installing them needs" >&2
        echo "root: run 'apt-get install -y $packages' as root (or set BERTFIT_SKIP_BROWSER=1 to skip" >&2
        echo "those tests)." >&2
        exit 1
    fi
    echo "install-browser: installing Debian's $packages for the browser tests needs root;" \
        "asking through sudo (set BERTFIT_SKIP_BROWSER=1 to skip those tests instead)."
    sudo="sudo"
else
    echo "install-browser: installing Debian's $packages for the browser tests (apt-get)."
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086  # the package list is meant to split
$sudo apt-get install -y -q $packages
