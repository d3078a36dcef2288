"""A run or an export: what a path names, and its predictor, for every command that takes either.

``bertfit explain`` and ``bertfit predict`` accept a run directory, a saved model directory or
a directory written by ``bertfit export``. The choice is made here, once, above both
:mod:`bertfit.inference` (a run's PyTorch model) and :mod:`bertfit.export` (the torch-free
predictor), so that neither of them, nor :mod:`bertfit.explain` under them, has to know about
the other. Both predictors answer the same calls: ``input_names``, ``predict(columns,
batch_size, calibrated)`` and ``explain(texts, method=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bertfit.errors import ConfigError
from bertfit.export.manifest import MANIFEST_FILE
from bertfit.export.runtime import ExportedClassifier, load_exported
from bertfit.paths import BERTFIT_FILE, find_model_dir

if TYPE_CHECKING:
    from bertfit.inference import TextClassifier

#: What a source path names: a run (or saved model) directory, or an exported directory.
RUN = "run"
EXPORT = "export"


def source_kind(source: str | Path) -> str:
    """:data:`EXPORT` for a directory holding an export manifest, else :data:`RUN`."""
    return EXPORT if (Path(source).expanduser() / MANIFEST_FILE).is_file() else RUN


def load_predictor(
    source: str | Path, *, batch_size: int | None = None, threads: int | None = None
) -> TextClassifier | ExportedClassifier:
    """The predictor of ``source``: an exported directory's
    :class:`~bertfit.export.runtime.ExportedClassifier` (no PyTorch needed), or the
    :class:`~bertfit.inference.TextClassifier` of a run or saved model directory.
    ``batch_size`` sets an export's default batch; ``threads`` the threads either one uses
    (ONNX Runtime's intra-op threads, or torch's).

    Raises :class:`~bertfit.errors.ConfigError` when ``source`` is neither, and
    :class:`~bertfit.errors.CheckpointError` when its files are damaged.
    """
    source = Path(source).expanduser()
    if source_kind(source) == EXPORT:
        options = {} if batch_size is None else {"batch_size": batch_size}
        return load_exported(source, threads=threads, **options)
    try:
        model_dir = find_model_dir(source)
    except ConfigError:
        raise ConfigError(
            f"{source}: not a bertfit run (no model/{BERTFIT_FILE}), saved model directory "
            f"(no {BERTFIT_FILE}) or export (no {MANIFEST_FILE})"
        ) from None
    # torch: an exported directory is used without it.
    import torch

    from bertfit.inference import TextClassifier

    if threads is not None:
        torch.set_num_threads(threads)
    return TextClassifier.from_pretrained(model_dir)


def default_explain_method(predictor: TextClassifier | ExportedClassifier) -> str:
    """Integrated gradients for a PyTorch model, occlusion for an export (no gradients)."""
    return "occlusion" if isinstance(predictor, ExportedClassifier) else "integrated_gradients"
