"""``bertfit export``: write one directory that classifies raw strings, and check it.

The directory (see :mod:`bertfit.export.manifest` for its files) is built in a staging
directory beside the target, checked by loading it with the runtime and comparing its logits
with the PyTorch model's on a sample, and only then renamed into place: an interrupted or failed
export leaves nothing behind, and an existing directory is replaced only on success.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bertfit
from bertfit.config import (
    atomic_write_text,
    make_staging_dir,
    read_json,
    replace_directory,
    write_json,
)
from bertfit.data.readers import read_glue_split, read_prediction_input
from bertfit.data.tasks import get_task
from bertfit.errors import BertfitError, CheckpointError, ConfigError
from bertfit.export import onnx_export
from bertfit.export.manifest import (
    CLASSIFIER_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILES,
    describe_files,
)
from bertfit.export.runtime import load_exported
from bertfit.export.spec import ClassifierSpec, ModelSpec, PackingSpec, TokenizerSpec
from bertfit.inference import TextClassifier
from bertfit.model_card import CardFacts, card_facts, render_model_card
from bertfit.paths import BERTFIT_FILE, MODEL_CARD_FILE, find_model_dir
from bertfit.progress import bar as progress_bar
from bertfit.text.tokenizer import VOCAB_FILE_NAME

EXPORT_FORMATS = tuple(MODEL_FILES)
QUANTIZATIONS = ("int8",)
#: Largest |logit difference| allowed between an fp32 export and the PyTorch model.
FP32_TOLERANCE = 1e-4
DEFAULT_CHECK_EXAMPLES = 64


@dataclass
class ExportCheck:
    """How the exported model's logits compare with the PyTorch model's on a sample."""

    examples: int
    source: str
    max_abs_diff: float
    class_agreement: float
    tolerance: float | None


@dataclass
class ExportResult:
    """What :func:`export_classifier` wrote."""

    directory: Path
    format: str
    precision: str
    check: ExportCheck | None
    fusions: dict[str, int] | None
    opset: int | None = None


def export_classifier(
    source: Any,
    output: str | Path,
    *,
    export_format: str = "onnx",
    quantize: str | None = None,
    check_examples: int = DEFAULT_CHECK_EXAMPLES,
    check_columns: list[list[str]] | None = None,
    check_input: str | Path | None = None,
    overwrite: bool = False,
    transformer_fusions: bool = False,
    progress: bool | None = None,
) -> ExportResult:
    """Export a fine-tuned classifier into ``output``; see the module docstring.

    Args:
        source: a run directory, a saved model directory, or a ``TextClassifier``.
        output: the directory to write.
        export_format: ``"onnx"`` (loads without PyTorch) or ``"torch-export"``.
        quantize: ``"int8"`` for ONNX Runtime dynamic quantization (ONNX only), or ``None``.
        check_examples: how many examples to compare with the PyTorch model (0: no check).
        check_columns: the texts to compare on (text columns); by default the first examples
            of the run's dev split when its files are at hand, else generated sentences.
        check_input: a file of texts to compare on instead (TSV, CSV or JSON lines with the
            model's input columns, as ``bertfit predict --input`` reads), read before anything
            is written.
        overwrite: replace an existing ``output``.
        transformer_fusions: also apply ``onnxruntime.transformers``' BERT fusions (Attention,
            EmbedLayerNormalization, SkipLayerNormalization, BiasGelu) at export. Off by
            default: ONNX Runtime applies its own LayerNorm, GELU and MatMul fusions when it
            loads the model, and on the CPUs measured (``bench/export_inference.py``) the
            extra Attention fusion made MRPC-length inputs slower, in fp32 and int8 alike.
        progress: show a bar over the export's stages (None: as :mod:`bertfit.progress` says).

    Raises:
        ConfigError: a bad option, or ``output`` exists without ``overwrite``.
        CheckpointError: the model cannot be read, or an fp32 export's logits differ from the
            PyTorch model's by more than ``FP32_TOLERANCE``.
    """
    _check_options(export_format, quantize, check_examples)
    if transformer_fusions and export_format != "onnx":
        raise ConfigError("transformer fusions apply to --format onnx only")
    output = Path(output)
    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists; choose another --output or --overwrite")
    model_dir = None
    if isinstance(source, TextClassifier):
        classifier = source
    else:
        model_dir = find_model_dir(source)
        classifier = TextClassifier.from_pretrained(model_dir)
    _check_lengths(classifier)
    if check_input is not None:
        check_columns = read_prediction_input(check_input, tuple(classifier.info.input_names))
    staging = make_staging_dir(output)
    # Seconds to a minute of work: a bar over the stages, quiet under --quiet or off a terminal.
    stages = progress_bar(desc="exporting", total=2, unit="stage", show=progress, delay=0)
    try:
        with stages:
            stages.set_postfix_str(f"writing {export_format}")
            result = _write(
                classifier, staging, export_format, quantize, model_dir, transformer_fusions
            )
            stages.update()
            if check_examples:
                stages.set_postfix_str("checking against PyTorch")
                columns, where = (
                    (check_columns, "given texts")
                    if check_columns is not None
                    else _default_check_columns(classifier, model_dir, check_examples)
                )
                result.check = _check(classifier, staging, columns, where, quantize)
                _write_manifest(staging, classifier, result, model_dir)  # now with the check
            stages.update()
        replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.directory = output
    return result


def _check_options(export_format: str, quantize: str | None, check_examples: int) -> None:
    if export_format not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format {export_format!r}; expected one of {EXPORT_FORMATS}"
        )
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")
    if quantize is not None and export_format != "onnx":
        raise ConfigError(f"--quantize {quantize} needs --format onnx")
    if (
        isinstance(check_examples, bool)
        or not isinstance(check_examples, int)
        or check_examples < 0
    ):
        raise ConfigError(f"check_examples must be a whole number >= 0, got {check_examples!r}")


def _check_lengths(classifier) -> None:
    limit = classifier.model.config.max_position_embeddings
    if classifier.info.max_seq_length > limit:
        raise CheckpointError(
            f"max_seq_length {classifier.info.max_seq_length} exceeds the model's "
            f"max_position_embeddings {limit}"
        )


def _write(classifier, staging: Path, export_format, quantize, model_dir, transformer_fusions):
    """Write the model file, vocabulary, model card, classifier.json and manifest into
    ``staging``."""
    model_file = MODEL_FILES[export_format]
    fusions = opset = None
    if export_format == "onnx":
        opset, fusions = _write_onnx(
            classifier.model, staging / model_file, quantize, transformer_fusions
        )
    else:
        _write_torch_export(classifier.model, staging / model_file)
    classifier.tokenizer.save(staging)
    precision = quantize or "fp32"
    write_export_card(classifier, staging, model_dir, export_format, precision)
    write_json(
        staging / CLASSIFIER_FILE, classifier_spec(classifier, export_format, precision).to_dict()
    )
    result = ExportResult(staging, export_format, precision, None, fusions, opset)
    _write_manifest(staging, classifier, result, model_dir)
    return result


def write_export_card(
    classifier: TextClassifier,
    staging: Path,
    model_dir: Path | None,
    export_format: str,
    precision: str,
) -> Path:
    """Write the export's ``README.md``: the saved model's card as it stands (edits kept),
    and a section on the export itself. A model directory saved before cards were written,
    or a classifier built in memory, gets the card of what it knows. The manifest then covers
    it like every other file."""
    source = model_dir or (Path(classifier.source) if classifier.source else None)
    if source is not None and (source / MODEL_CARD_FILE).is_file():
        card = (source / MODEL_CARD_FILE).read_text(encoding="utf-8")
    elif source is not None and (source / BERTFIT_FILE).is_file():
        card = render_model_card(card_facts(source))
    else:
        encoder = classifier.model.config.to_hf_dict()
        encoder["problem_type"] = classifier.problem_type
        encoder["num_labels"] = classifier.model.num_classes
        card = render_model_card(CardFacts(classifier.info.task, asdict(classifier.info), encoder))
    path = staging / MODEL_CARD_FILE
    atomic_write_text(path, card.rstrip("\n") + "\n\n" + export_section(export_format, precision))
    return path


def export_section(export_format: str, precision: str) -> str:
    """The part of an export's card that says what the export is and how to load it."""
    runtime = "ONNX Runtime, no PyTorch" if export_format == "onnx" else "PyTorch"
    lines = [
        "## This export",
        "",
        f"This directory is a `bertfit export` of the model above, as {export_format} "
        f"({precision}): `{MODEL_FILES[export_format]}`, `{VOCAB_FILE_NAME}`, "
        f"`{CLASSIFIER_FILE}`, and `{MANIFEST_FILE}` with the sha256 of every file, this card "
        "included: an export whose files changed after it was written does not load (edit the "
        "saved model's card and export again). It loads with bertfit alone "
        f"({runtime}):",
        "",
        "```python",
        "import bertfit",
        "",
        'classifier = bertfit.load_exported("path/to/export")',
        "```",
        "",
        "or serves over HTTP with `bertfit serve path/to/export`. transformers does not read "
        "it: load the saved model directory it was exported from instead.",
    ]
    if precision != "fp32":
        lines[-1] += (
            f" The results above are the fp32 model's; {precision} weights move its outputs a "
            f"little (`{MANIFEST_FILE}`'s `check` says how much)."
        )
    return "\n".join(lines) + "\n"


def classifier_spec(classifier, export_format: str, precision: str) -> ClassifierSpec:
    """The ``classifier.json`` of a ``TextClassifier`` exported in ``export_format``."""
    info = classifier.info
    return ClassifierSpec(
        task=info.task,
        input_names=list(info.input_names),
        label_names=list(info.label_names),
        tokenizer=TokenizerSpec(
            lower_case=classifier.tokenizer.lower_case, vocab_file=VOCAB_FILE_NAME
        ),
        packing=PackingSpec(
            seq_length=info.max_seq_length,
            special_tokens=dict(classifier.tokenizer.special_tokens_dict),
            truncation=info.truncator,
            window_stride=info.window_stride,
        ),
        model=ModelSpec(
            format=export_format,
            file=MODEL_FILES[export_format],
            num_classes=classifier.model.num_classes,
            precision=precision,
        ),
        temperature=info.temperature,
        problem_type=classifier.problem_type,
        thresholds=None if info.thresholds is None else list(info.thresholds),
    )


def _write_onnx(model, path: Path, quantize: str | None, transformer_fusions: bool):
    """Write, optionally fuse, optionally quantize; returns (opset, fused-node counts or None)."""

    graph = path.with_name(".exported.onnx")
    fusions = None
    if transformer_fusions:
        opset = onnx_export.export_traced(model, graph)
        fused = path.with_name(".fused.onnx")
        config = model.config
        fusions = onnx_export.fuse(graph, fused, config.num_attention_heads, config.hidden_size)
        os.replace(fused, graph)
    else:
        opset = onnx_export.export_onnx(model, graph)
    if quantize == "int8":
        onnx_export.quantize_int8(graph, path, fused=transformer_fusions)
        graph.unlink()
    else:
        os.replace(graph, path)
    return opset, fusions


def _write_torch_export(model, path: Path) -> None:
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", min=2, max=model.config.max_position_embeddings)
    shapes = ({0: batch, 1: sequence},) * 3
    inputs = onnx_export.example_inputs(model)
    program = torch.export.export(model.eval(), inputs, dynamic_shapes=shapes)
    # Without example inputs the archive holds no pickle at all (see torch_runtime).
    program.example_inputs = None
    torch.export.save(program, str(path))


def _versions() -> dict[str, str]:
    versions = {"bertfit": bertfit.__version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _write_manifest(staging: Path, classifier, result: ExportResult, model_dir) -> None:
    names = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name != MANIFEST_FILE)
    export: dict[str, Any] = {"format": result.format, "precision": result.precision}
    if result.format == "onnx":
        export["opset"] = result.opset
        export["transformer_fusions"] = result.fusions
    if result.precision == "int8":
        export["quantization"] = {
            "method": "onnxruntime.quantization.quantize_dynamic",
            "weights": "int8, per channel",
            "activations": "uint8, per tensor, computed at run time",
        }
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "task": classifier.info.task,
        "source": None if model_dir is None else str(model_dir),
        "export": export,
        "versions": _versions(),
        "check": None if result.check is None else asdict(result.check),
        "files": describe_files(staging, names),
    }
    write_json(staging / MANIFEST_FILE, manifest)


def _default_check_columns(classifier, model_dir: Path | None, n: int):
    """The first ``n`` dev examples of the run's data when at hand, else generated text;
    and a description of where they came from."""
    columns = _dev_sample(classifier.info.task, model_dir, n)
    if columns is not None:
        return columns, f"{classifier.info.task} dev split"
    columns = synthetic_columns(
        classifier.tokenizer, len(classifier.info.input_names), n, classifier.info.max_seq_length
    )
    return columns, "generated sentences"


def _dev_sample(task_name: str, model_dir: Path | None, n: int) -> list[list[str]] | None:
    if model_dir is None or not (model_dir.parent / "config.json").is_file():
        return None
    try:
        data_dir = read_json(model_dir.parent / "config.json").get("data_dir")
        task = get_task(task_name)
        if not isinstance(data_dir, str):
            return None
        for candidate in (Path(data_dir), Path(data_dir) / task.glue_dir):
            if (candidate / "dev.tsv").is_file():
                examples = read_glue_split(candidate / "dev.tsv", task, "dev")
                return [column[:n] for column in examples.columns]
    except (BertfitError, AttributeError):
        return None  # the check falls back to generated text; the export itself is unaffected
    return None


def synthetic_columns(tokenizer, num_columns: int, n: int, seq_length: int, seed: int = 0):
    """``n`` rows of generated sentences from the vocabulary's whole words.

    Lengths range from one word to twice ``seq_length`` words, so trimming is exercised too.
    """
    vocab = [line.rstrip() for line in tokenizer.vocab_file.read_text(encoding="utf-8").split("\n")]
    words = [w for w in vocab if w and not w.startswith("##") and not w.startswith("[")] or ["a"]
    rng = np.random.default_rng(seed)
    columns = []
    for _ in range(num_columns):
        lengths = rng.integers(1, 2 * seq_length, size=n)
        columns.append([" ".join(rng.choice(words, size=int(k))) for k in lengths])
    return columns


def _check(classifier, staging: Path, columns, source: str, quantize: str | None) -> ExportCheck:
    """Load the staged export with the runtime and compare its logits with PyTorch's."""
    reference = classifier.logits(columns)
    exported = load_exported(staging).logits(columns)
    diff = float(np.abs(reference - exported).max()) if len(reference) else 0.0
    agreement = (
        float((reference.argmax(-1) == exported.argmax(-1)).mean()) if len(reference) else 1.0
    )
    tolerance = None if quantize else FP32_TOLERANCE
    check = ExportCheck(len(reference), source, diff, agreement, tolerance)
    if tolerance is not None and not diff <= tolerance:
        raise CheckpointError(
            f"export check failed: the exported model's logits differ from the PyTorch model's "
            f"by up to {diff:.3g} on {len(reference)} examples (tolerance {tolerance:g})"
        )
    return check
