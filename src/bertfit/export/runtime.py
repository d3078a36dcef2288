"""Load an exported classifier and call it with raw strings: no PyTorch needed.

``load_exported(DIR)`` checks the manifest's checksums, rebuilds the tokenizer and packer from
``classifier.json`` and opens the model with ONNX Runtime. The predictor takes text columns,
sorts the examples by length, runs them in batches padded to each batch's longest example, and
returns the logits, class ids and class names in input order, like the reference tutorial's
exported module (the columns of :func:`bertfit.predictions.prediction_columns`). Its imports
are numpy, tokenizers and onnxruntime (and torch only for a ``torch-export`` directory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bertfit.data.batching import sorted_batches
from bertfit.errors import CheckpointError, ConfigError, DataError
from bertfit.explain.explain import Packing, explain_by_occlusion
from bertfit.explain.explanation import Explanation, check_method, row_texts
from bertfit.export.manifest import CLASSIFIER_FILE, verify_directory
from bertfit.export.spec import ClassifierSpec
from bertfit.predictions import prediction_columns, prediction_rows
from bertfit.probabilities import mean_by_owner, note_uncalibrated
from bertfit.problem import REGRESSION, ProblemType
from bertfit.text.packing import PackedExample, pad_packed
from bertfit.text.processor import TextProcessor
from bertfit.text.tokenizer import WordpieceTokenizer

DEFAULT_BATCH_SIZE = 32

#: ONNX Runtime fusions left off at load. Residual Add + LayerNormalization fused into
#: ``SkipLayerNormalization`` ran about five times slower than the two ops apart on the CPUs
#: measured (ONNX Runtime 1.32): 1 ms of a 6 ms int8 MRPC pair.
DISABLED_FUSIONS = ["SkipLayerNormFusion"]


class Backend(Protocol):
    """Runs the model on one padded batch: the three int64 inputs in, logits out."""

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray: ...


class OnnxBackend:
    """An ONNX Runtime session on the CPU, with all graph optimizations on.

    ``threads`` sets the intra-op thread count (``None``: ONNX Runtime's default, one per
    physical core). ``spin_wait=False`` stops idle worker threads from spinning, which a
    server wants: spinning gains a little latency in tight loops but takes CPU from the rest.
    """

    def __init__(
        self, path: Path, output: str, threads: int | None = None, spin_wait: bool = True
    ) -> None:
        import onnxruntime as ort  # only ONNX exports need it; a torch export loads without

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(path),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=DISABLED_FUSIONS,
            )
        except Exception as error:  # ORT raises its own types for unreadable or unsupported models
            raise CheckpointError(f"{path}: ONNX Runtime cannot load the model ({error})") from None
        self.output = output

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Logits [batch, classes] of one padded batch."""
        return self.session.run([self.output], feed)[0]


class ExportedClassifier:
    """A classifier loaded from an exported directory: raw strings in, labels out.

    Call it with a mapping from each text column (``input_names``) to a list of strings::

        predictor({"sentence1": [...], "sentence2": [...]})

    and get a dict of numpy columns: ``logits`` [n, num_classes], ``probabilities``
    [n, num_classes] (calibrated with the run's temperature; ``calibrated=False`` gives the raw
    softmax), ``class_id`` [n] (argmax over classes) and ``label`` [n] (label names), also
    under the reference tutorial's name ``class``. A regression model gives ``score`` [n] and
    ``logits`` [n, 1]; a multi-label one ``labels`` [n] (lists of the label names chosen at
    the model's thresholds), ``probabilities`` [n, labels] (sigmoids) and ``logits``.
    These are :func:`bertfit.predictions.prediction_columns`, the fields of
    every ``predict`` row and server answer.
    Any number of examples may be passed; they are run in length-sorted batches of
    ``batch_size``. Over-long texts are trimmed exactly as in training.
    """

    def __init__(
        self,
        directory: Path,
        manifest: dict[str, Any],
        spec: ClassifierSpec,
        backend: Backend,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        _check_batch_size(batch_size)
        self.directory = directory
        self.manifest = manifest
        self.spec = spec
        self.backend = backend
        self.batch_size = batch_size
        tokenizer = WordpieceTokenizer(
            directory / spec.tokenizer.vocab_file, lower_case=spec.tokenizer.lower_case
        )
        if tokenizer.special_tokens_dict != spec.packing.special_tokens:
            raise CheckpointError(
                f"{directory / CLASSIFIER_FILE}: packing.special_tokens do not match "
                f"{spec.tokenizer.vocab_file}"
            )
        # Trimmed by the training run's truncator, so that served inputs are packed as trained.
        self.processor = TextProcessor(tokenizer, spec.packing.seq_length, spec.packing.truncation)
        self._padding_id = spec.packing.special_tokens["padding_id"]

    @property
    def temperature(self) -> float:
        """The softmax temperature of calibrated probabilities (1, said once, when the model
        was exported before calibration)."""
        if self.spec.temperature is None:
            if self.problem_type != REGRESSION:
                note_uncalibrated(str(self.directory), self)
            return 1.0
        return self.spec.temperature

    @property
    def task(self) -> str:
        """Name of the task the model was fine-tuned on."""
        return self.spec.task

    @property
    def problem_type(self) -> ProblemType:
        """What the model's outputs mean (:mod:`bertfit.problem`)."""
        return self.spec.problem_type

    @property
    def input_names(self) -> list[str]:
        """The text columns, in segment order."""
        return list(self.spec.input_names)

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label model's decision thresholds, one per label (None: 0.5 each)."""
        return None if self.spec.thresholds is None else list(self.spec.thresholds)

    @property
    def label_names(self) -> list[str]:
        """Class names; the class id is the position."""
        return list(self.spec.label_names)

    @property
    def max_seq_length(self) -> int:
        """Packed length (special tokens included) that longer examples are trimmed to."""
        return self.spec.packing.seq_length

    @property
    def truncator(self) -> str:
        """How examples longer than ``max_seq_length`` are cut (``round_robin``, ``waterfall``)."""
        return self.spec.packing.truncation

    def __call__(
        self,
        inputs: Mapping[str, Sequence[str] | str],
        batch_size: int | None = None,
        calibrated: bool = True,
    ) -> dict[str, np.ndarray]:
        """Classify the rows of ``inputs`` (text columns); see the class docstring."""
        logits = self.logits(self.columns(inputs), batch_size)
        return self.outputs(logits, calibrated)

    def columns(self, inputs: Mapping[str, Sequence[str] | str]) -> list[list[str]]:
        """Validate a mapping of text columns and return them in segment order.

        A column given as one string counts as one row. Raises :class:`DataError` naming the
        column (and row) that is missing, unknown, of unequal length or not a string.
        """
        if not isinstance(inputs, Mapping):
            kind = type(inputs).__name__
            raise DataError(f"expected a mapping of text columns {self.input_names}, got {kind}")
        unknown = [name for name in inputs if name not in self.spec.input_names]
        if unknown:
            raise DataError(f"unknown input column {unknown[0]!r}; expected {self.input_names}")
        columns = [_column(inputs, name) for name in self.spec.input_names]
        sizes = {len(column) for column in columns}
        if len(sizes) > 1:
            counts = {name: len(col) for name, col in zip(self.spec.input_names, columns)}
            raise DataError(f"input columns differ in length: {counts}")
        return columns

    def encode(self, columns: list[list[str]]) -> list[PackedExample]:
        """Tokenize and pack text columns (trimmed to ``max_seq_length``, not padded)."""
        return self.processor.encode(columns)

    def logits(self, columns: list[list[str]], batch_size: int | None = None) -> np.ndarray:
        """Logits [n, num_classes] of text columns, in input order (a windowed model's are
        the mean over each text's windows)."""
        stride = self.spec.packing.window_stride
        if stride is None:
            return self.logits_of_packed(self.encode(columns), batch_size)
        examples, owners = self.processor.encode_windows(columns, stride)
        logits = self.logits_of_packed(examples, batch_size)
        return mean_by_owner(logits, owners, len(columns[0]) if columns else 0)

    def predict(
        self, columns: list[list[str]], batch_size: int | None = None, calibrated: bool = True
    ) -> list[dict]:
        """One dict per example, as :meth:`bertfit.inference.TextClassifier.predict` gives:
        ``label``, ``class_id``, ``probabilities`` (calibrated unless ``calibrated`` is False)
        and ``logits``; a regression model's ``score``; a multi-label model's ``labels``
        (chosen at its temperature and thresholds either way) and each label's probability
        by name."""
        if isinstance(columns, (str, Mapping)) or len(columns) != len(self.input_names):
            raise DataError(f"expected one list of texts per input column {self.input_names}")
        logits = self.logits(self.columns(dict(zip(self.input_names, columns))), batch_size)
        temperature = self.temperature
        return prediction_rows(
            logits,
            self.problem_type,
            self.label_names,
            temperature if calibrated else 1.0,
            self.thresholds,
            temperature,
        )

    def explain(
        self, inputs, method: str = "occlusion", target: int | str | None = None
    ) -> Explanation:
        """Word attributions of one input row toward ``target``: a label
        name or index (default: the predicted class; a multi-label model's most probable label).

        ``inputs`` maps each text column to one string (or is a sequence of one text per
        column). Only ``"occlusion"`` runs here: it needs no gradients, so no PyTorch. Returns
        a :class:`bertfit.explain.Explanation`.
        """
        check_method(method, ("occlusion",))
        texts = row_texts(inputs, self.input_names)
        return explain_by_occlusion(self.explain_packing(), texts, self.logits_of_packed, target)

    def explain_packing(self) -> Packing:
        """How this predictor packs a row, for :mod:`bertfit.explain`."""
        return Packing(
            tokenizer=self.processor.tokenizer,
            seq_length=self.spec.packing.seq_length,
            special_tokens=dict(self.spec.packing.special_tokens),
            stride=self.spec.packing.window_stride,
            input_names=self.input_names,
            label_names=self.label_names,
            problem_type=self.problem_type,
            temperature=self.temperature,
            truncator=self.truncator,
            thresholds=self.thresholds,
        )

    def logits_of_packed(
        self, examples: list[PackedExample], batch_size: int | None = None
    ) -> np.ndarray:
        """Logits of packed examples, run in length-sorted batches, returned in input order."""
        batch_size = self.batch_size if batch_size is None else batch_size
        _check_batch_size(batch_size)
        logits = np.zeros((len(examples), self.spec.model.num_classes), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) to a few percent of each batch.
        for batch in sorted_batches([len(ids) for ids, _ in examples], batch_size):
            feed = pad_packed([examples[i] for i in batch], self._padding_id)
            logits[batch] = self.backend.run(feed)
        return logits

    def outputs(self, logits: np.ndarray, calibrated: bool = True) -> dict[str, np.ndarray]:
        """The output columns for ``logits`` (see the class docstring); probabilities are
        calibrated unless ``calibrated`` is False."""
        temperature = self.temperature
        columns = prediction_columns(
            logits,
            self.problem_type,
            self.label_names,
            temperature if calibrated else 1.0,
            self.thresholds,
            temperature,
        )
        if "label" in columns:
            columns["class"] = columns["label"]  # the reference tutorial's name for it
        return columns

    def __repr__(self) -> str:
        model = self.spec.model
        return (
            f"ExportedClassifier({str(self.directory)!r}, task={self.task!r}, "
            f"format={model.format!r}, precision={model.precision!r}, labels={self.label_names})"
        )


def _column(inputs: Mapping[str, Any], name: str) -> list[str]:
    if name not in inputs:
        raise DataError(f"missing input column {name!r}")
    value = inputs[name]
    rows = [value] if isinstance(value, str) else value
    if not isinstance(rows, (Sequence, np.ndarray)):
        raise DataError(
            f"input column {name!r}: expected a list of strings, got {type(value).__name__}"
        )
    for index, text in enumerate(rows):
        if not isinstance(text, str):
            raise DataError(
                f"input column {name!r}, row {index}: expected a string, got {type(text).__name__}"
            )
    return [str(text) for text in rows]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def load_exported(
    directory: str | Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    spin_wait: bool = True,
) -> ExportedClassifier:
    """Load a directory written by ``bertfit export`` and return its predictor.

    Every file is checked against the manifest's sha256 first; a changed, missing or unlisted
    file raises :class:`~bertfit.errors.CheckpointError` naming it.

    Args:
        directory: the exported directory.
        batch_size: examples per model call (default 32); calls may pass any number.
        threads: intra-op threads of the model runtime (default: the runtime's own choice).
        spin_wait: let idle ONNX Runtime threads spin (lower latency for back-to-back calls;
            ``bertfit serve`` turns it off so that waiting threads leave the CPU to others).
    """
    directory = Path(directory)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    manifest = verify_directory(directory)
    spec = ClassifierSpec.read(directory / CLASSIFIER_FILE)
    if spec.model.format != manifest["export"]["format"]:
        raise CheckpointError(
            f"{directory / CLASSIFIER_FILE}: model.format {spec.model.format!r} differs from "
            f"the manifest's {manifest['export']['format']!r}"
        )
    if spec.model.file not in manifest["files"]:
        raise CheckpointError(
            f"{directory}: manifest does not list the model file {spec.model.file}"
        )
    backend = _open_backend(directory / spec.model.file, spec, threads, spin_wait)
    return ExportedClassifier(directory, manifest, spec, backend, batch_size)


def _open_backend(
    path: Path, spec: ClassifierSpec, threads: int | None, spin_wait: bool
) -> Backend:
    if spec.model.format == "onnx":
        return OnnxBackend(path, spec.model.output, threads, spin_wait)
    # Only users who stay in PyTorch export this format; torch is imported for it alone.
    from bertfit.export.torch_runtime import TorchExportBackend

    return TorchExportBackend(path, threads)
