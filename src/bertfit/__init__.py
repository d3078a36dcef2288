"""bertfit: fine-tune pretrained BERT-family encoders into text classifiers.

The public names below are imported lazily (on first use), so ``import bertfit`` stays light
and does not import torch; the tokenizer and data readers work without it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "WordpieceTokenizer": "bertfit.text.tokenizer",
    "BertPacker": "bertfit.text.packing",
    "TextProcessor": "bertfit.text.processor",
    "EncoderConfig": "bertfit.model.config",
    "BertEncoder": "bertfit.model.encoder",
    "BertClassifier": "bertfit.model.classifier",
    "load_pretrained": "bertfit.model.weights",
    "LoadReport": "bertfit.model.weights",
    "default_model_dir": "bertfit.model.presets",
    "resolve_model_dir": "bertfit.model.presets",
    "load_encoder_source": "bertfit.model.sources",
    "convert_to_hf": "bertfit.model.convert",
    "OptimizationConfig": "bertfit.train.optim",
    "build_optimizer": "bertfit.train.optim",
    "learning_rate_schedule": "bertfit.train.optim",
    "Trainer": "bertfit.train.trainer",
    "TrainerConfig": "bertfit.train.config",
    "RunConfig": "bertfit.train.config",
    "LoggingConfig": "bertfit.train.config",
    "load_run_config": "bertfit.train.config_file",
    "inspect_model": "bertfit.inspect",
    "train_run": "bertfit.train.run",
    "distill_run": "bertfit.train.student_run",
    "TextClassifier": "bertfit.inference",
    "ClassifierInfo": "bertfit.inference",
    "BertfitError": "bertfit.errors",
    "export_classifier": "bertfit.export.export",
    "load_exported": "bertfit.export.runtime",
    "ExportedClassifier": "bertfit.export.runtime",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'bertfit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
