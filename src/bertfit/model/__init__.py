"""BERT encoder, classifier, configs and pretrained weights.

Names are exported lazily: ``import bertfit.model`` and ``bertfit.model.config`` do not import
torch, so code that only reads configs or model directories (an ONNX predictor) runs without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> submodule that defines it.
_EXPORTS = {
    "EncoderConfig": "config",
    "default_model_dir": "presets",
    "resolve_model_dir": "presets",
    "read_lower_case": "sources",
    "BertEncoder": "encoder",
    "EncoderOutput": "encoder",
    "BertClassifier": "classifier",
    "LoadReport": "weights",
    "load_pretrained": "weights",
    "save_pretrained": "hf_classifier",
    "load_classifier": "hf_classifier",
    "classifier_from_pretrained": "hf_classifier",
    "PRESETS": "presets",
    "describe_source": "sources",
    "load_encoder_source": "sources",
    "convert_to_hf": "convert",
    "CheckpointReader": "tf_checkpoint",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from bertfit.model.classifier import BertClassifier
    from bertfit.model.config import EncoderConfig
    from bertfit.model.convert import convert_to_hf
    from bertfit.model.encoder import BertEncoder, EncoderOutput
    from bertfit.model.hf_classifier import (
        classifier_from_pretrained,
        load_classifier,
        save_pretrained,
    )
    from bertfit.model.presets import PRESETS, default_model_dir, resolve_model_dir
    from bertfit.model.sources import describe_source, load_encoder_source, read_lower_case
    from bertfit.model.tf_checkpoint import CheckpointReader
    from bertfit.model.weights import LoadReport, load_pretrained


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
