"""Headless Chromium for the page tests: Debian's ``chromium`` driven by ``chromium-driver``
through Selenium, and a ``bertfit serve`` subprocess on a free loopback port.

Install the browser with ``apt-get install -y chromium chromium-driver`` (``.ci/run`` does).
Only ``BERTFIT_SKIP_BROWSER=1`` lets the browser tests skip when it is missing; otherwise they
fail and say what to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from conftest import BLOCK_TORCH

CHROMIUM = os.environ.get("BERTFIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BERTFIT_CHROMEDRIVER", "/usr/bin/chromedriver")
SKIP_VARIABLE = "BERTFIT_SKIP_BROWSER"
# Without the networking switches Chromium keeps reaching for Google's services, which a closed
# network refuses slowly; none of them is needed to render a page from 127.0.0.1.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# `bertfit serve` with torch made unimportable: the page must work against an ONNX export on
# a server that has no PyTorch.
SERVE_WITHOUT_TORCH = (
    BLOCK_TORCH
    + """
from bertfit.cli import main
sys.exit(main(["serve", *sys.argv[1:]]))
"""
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    if missing:
        return (
            f"{', '.join(missing)} not found: install Debian's browser with "
            "`apt-get install -y chromium chromium-driver` (or set BERTFIT_CHROMIUM / "
            f"BERTFIT_CHROMEDRIVER; {SKIP_VARIABLE}=1 skips these tests)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `pip install -e .[dev]` installs it"
    return None


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(export_dir: Path, without_torch: bool = True, timeout: float = 120.0):
    """Run ``bertfit serve EXPORT`` on a free loopback port; yields its base URL."""
    import httpx

    port = free_port()
    if without_torch:
        command = [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(export_dir), "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bertfit", "serve", str(export_dir), "--port", str(port)]
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"bertfit serve did not start:\n{log.read()}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@contextmanager
def chromium(width: int = 1000, height: int = 900):
    """A headless Chromium under Selenium, with a fresh profile that is removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bertfit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    # The driver is given explicitly: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def submit_pair(driver, url: str, texts: dict[str, str], timeout: float = 60.0) -> str:
    """Load the page, type ``texts`` into its boxes, submit, and wait for the answer; returns
    the page's state after it (``result`` or ``error``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
    )
    for name, text in texts.items():
        box = driver.find_element(By.ID, f"input-{name}")
        box.clear()
        box.send_keys(text)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, timeout).until(
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("result", "error")
        )
    )
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
