"""What ``bertfit explain`` explains with: a run's PyTorch model or an exported directory."""

from __future__ import annotations

from pathlib import Path

from bertfit.export.manifest import MANIFEST_FILE
from bertfit.export.runtime import ExportedClassifier, load_exported
from bertfit.paths import find_model_dir


def load_explainer(source: str | Path):
    """The predictor of ``source``: an exported directory (it has a ``manifest.json``; torch
    free, occlusion only) or a run / saved model directory (a ``TextClassifier``: integrated
    gradients or occlusion). Both have ``input_names`` and ``explain(texts, method=...)``."""
    source = Path(source)
    if (source / MANIFEST_FILE).is_file():
        return load_exported(source)
    model_dir = find_model_dir(source)
    # torch: an exported directory is explained without it.
    from bertfit.inference import TextClassifier

    return TextClassifier.from_pretrained(model_dir)


def default_method(predictor) -> str:
    """Integrated gradients for a PyTorch model, occlusion for an export (no gradients)."""
    return "occlusion" if isinstance(predictor, ExportedClassifier) else "integrated_gradients"
