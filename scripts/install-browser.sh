#!/usr/bin/env bash
# Install the headless browser that the try-it page's tests drive: Debian's `chromium` and
# `chromium-driver` (Selenium is given /usr/bin/chromedriver; nothing is downloaded at test
# time). Does nothing when both are already installed. scripts/apt-install.sh installs
# it (apt-get as root, else through sudo).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
exec bash "$(dirname "$0")/apt-install.sh" install-browser "browser tests" BERTFIT_SKIP_BROWSER chromium chromium-driver
