"""Export a fine-tuned classifier into one self-contained directory, and load it without PyTorch.

``export_classifier`` (``bertfit export``) writes the directory; ``load_exported`` returns a
predictor that takes raw strings and needs only onnxruntime, tokenizers and numpy. Names are
imported lazily so that importing this package loads neither torch nor onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "export_classifier": "bertfit.export.export",
    "ExportResult": "bertfit.export.export",
    "load_exported": "bertfit.export.runtime",
    "ExportedClassifier": "bertfit.export.runtime",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'bertfit.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
