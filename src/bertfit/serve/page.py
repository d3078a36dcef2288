"""The try-it page of ``bertfit serve`` (``GET /``): one self-contained HTML document.

The page's HTML, CSS and JavaScript are package data (``bertfit/serve/page/``); they are put
together once when the server starts, with the model's metadata (task, text columns, labels)
inlined as JSON, so the browser needs no other request than its calls to ``POST /explain``,
and nothing from the network.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

PAGE_FILES = ("index.html", "page.css", "page.js")


def read_page_file(name: str) -> str:
    """The text of one of the page's packaged files."""
    return (resources.files("bertfit.serve") / "page" / name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element (no ``</script>`` can close it)."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(metadata: dict[str, Any]) -> str:
    """The page for a model described by ``metadata`` (what ``GET /metadata`` answers)."""
    template, css, script = (read_page_file(name) for name in PAGE_FILES)
    title = f"bertfit: {metadata.get('task', 'classifier')}"
    # Plain replacement, not str.format: the CSS and JavaScript are full of braces.
    for marker, value in (
        ("{{title}}", html.escape(title)),
        ("{{css}}", css),
        ("{{metadata}}", script_json(metadata)),
        ("{{script}}", script),
    ):
        template = template.replace(marker, value)
    return template
