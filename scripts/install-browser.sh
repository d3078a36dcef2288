#!/usr/bin/env bash
# Install the headless browser that the try-it page's tests drive: Debian's `chromium` and
# `chromium-driver` (Selenium is given /usr/bin/chromedriver; nothing is downloaded at test
# time). Needs root, or sudo. Does nothing when both are already installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q chromium chromium-driver
