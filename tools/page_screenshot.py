"""Screenshot of the try-it page of ``bertfit serve`` with one prediction on it.

Serves EXPORT (an exported model) on a free loopback port, loads ``GET /`` in headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, as the browser tests drive it), types the texts,
submits, waits for the answer and saves a PNG of the whole page::

    .venv/bin/python tools/page_screenshot.py EXPORT --sentence1 "..." --sentence2 "..." \\
        --output docs/figures/try-it.png
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the browser helpers the page tests use

from browser import chromium, missing_browser, serve, submit_pair  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="exported model directory")
    parser.add_argument("--sentence1", required=True)
    parser.add_argument("--sentence2")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "figures" / "try-it.png")
    parser.add_argument("--width", type=int, default=900)
    args = parser.parse_args()
    problem = missing_browser()
    if problem:
        raise SystemExit(problem)
    texts = {"sentence1": args.sentence1}
    if args.sentence2 is not None:
        texts["sentence2"] = args.sentence2
    with serve(args.export, without_torch=True) as url, chromium(args.width, 800) as driver:
        state = submit_pair(driver, url, texts)
        if state != "result":
            raise SystemExit(f"the page shows an error: {driver.find_element('id', 'error').text}")
        # The whole page, not only the window: Chromium's DevTools capture beyond the viewport.
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
