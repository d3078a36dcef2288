"""A fine-tuned classifier with its tokenizer: raw strings in, labels and scores out.

:class:`TextClassifier` is what a run saves in ``RUN/model/`` and what ``bertfit evaluate`` and
``bertfit predict`` load. The directory is a Hugging Face-compatible model directory
(``config.json``, ``model.safetensors``, ``vocab.txt``, ``tokenizer_config.json``,
``special_tokens_map.json``) plus ``bertfit.json`` with the task, label names and text
settings, and, in a run, the model card ``README.md``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import bertfit
from bertfit.config import (
    dataclass_from_dict,
    make_staging_dir,
    read_json,
    replace_directory,
    write_json,
)
from bertfit.data.batching import sorted_batches
from bertfit.errors import CheckpointError
from bertfit.explain.explain import (
    Packing,
    explain_by_gradients,
    explain_by_occlusion,
)
from bertfit.explain.explanation import METHODS, Explanation, check_method, row_texts
from bertfit.model.classifier import BertClassifier
from bertfit.model.hf_classifier import load_classifier, save_pretrained
from bertfit.model.padding_free import PaddingFreeBatch, batch_from_arrays, batch_from_sequences
from bertfit.paths import BERTFIT_FILE
from bertfit.precision import autocast
from bertfit.predictions import prediction_rows
from bertfit.probabilities import (
    check_temperature,
    check_thresholds,
    mean_by_owner,
    note_uncalibrated,
)
from bertfit.problem import REGRESSION, ProblemType
from bertfit.progress import bar as progress_bar
from bertfit.text.packing import DEFAULT_TRUNCATOR, Truncator, pad_packed
from bertfit.text.processor import TextProcessor
from bertfit.text.ragged import RaggedPacked, example_lengths
from bertfit.text.tokenizer import VOCAB_FILE_NAME, WordpieceTokenizer

# Rows tokenized at once when encoding a large input under a progress bar.
ENCODE_CHUNK = 8192


@dataclass
class ClassifierInfo:
    """What ``bertfit.json`` records beside the Hugging Face files."""

    task: str
    label_names: list[str]
    max_seq_length: int
    lower_case: bool
    input_names: list[str]
    bertfit_version: str = bertfit.__version__
    # Texts longer than max_seq_length: None truncates them; a number splits them into
    # overlapping windows this many tokens apart whose logits are averaged per text.
    window_stride: int | None = None
    # How examples longer than max_seq_length are cut: "round_robin" or "waterfall" (see
    # bertfit.text.packing). Directories saved before it was recorded load as round robin.
    truncator: Truncator = DEFAULT_TRUNCATOR
    # Softmax temperature fitted on the dev set after training (bertfit.temperature). None
    # for regression models and for runs trained before calibration: those use 1.
    temperature: float | None = None
    # A distilled model: its teacher run and how it was cut and trained (teacher, teacher_layers,
    # layers, init, temperature, alpha, seed; see bertfit.train.distillation). None otherwise.
    distilled_from: dict | None = None
    # What the model's outputs mean (bertfit.problem; config.json records it too). None in a
    # bertfit.json written before it was recorded: the model's own (config.json's) is taken.
    problem_type: str | None = None
    # A multi-label model's decision thresholds, one per label in label_names' order, fitted
    # on dev after training (bertfit.thresholds). None: 0.5 for every label.
    thresholds: list[float] | None = None


Packed = tuple[list[int], list[int]]


def to_tensors(examples: list[Packed], padding_id: int, seq_length: int | None) -> dict:
    """Pad packed examples into the three model inputs as torch tensors."""
    arrays = pad_packed(examples, padding_id, seq_length)
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}


def batch_tensors(
    examples: Sequence[Packed], indices, padding_id: int, seq_length: int | None
) -> dict:
    """:func:`to_tensors` of ``examples[i] for i in indices``, gathered at once from a store."""
    if isinstance(examples, RaggedPacked):
        arrays = examples.gather_padded(indices, padding_id, seq_length)
        return {name: torch.from_numpy(value) for name, value in arrays.items()}
    return to_tensors([examples[i] for i in indices], padding_id, seq_length)


#: Packed batches' rows are rounded up to a multiple of this, so that their matrix products
#: recur in a few shapes whose kernels oneDNN keeps (see bertfit.model.padding_free). Measured on a
#: 2-core Xeon with AMX: bench/train_levers.py, variants row-multiple-N.
PADDING_FREE_ROW_MULTIPLE = 128

#: Attention's padded width in padding-free batches is rounded up to a multiple of this, for the
#: same reason (its batched products are shaped by the longest sequence). Measured with
#: bench/train_levers.py, variants length-multiple-N.
PADDING_FREE_LENGTH_MULTIPLE = 16


def padding_free_batch(examples: Sequence[Packed], indices) -> PaddingFreeBatch:
    """A padding-free :class:`PaddingFreeBatch` of ``examples[i] for i in indices``, its rows
    rounded up to a multiple of :data:`PADDING_FREE_ROW_MULTIPLE` and attention's width to one of
    :data:`PADDING_FREE_LENGTH_MULTIPLE`."""
    rounding = (PADDING_FREE_ROW_MULTIPLE, PADDING_FREE_LENGTH_MULTIPLE)
    if isinstance(examples, RaggedPacked):
        word_ids, type_ids, offsets = examples.gather_flat(indices)
        return batch_from_arrays(word_ids, type_ids, np.diff(offsets), *rounding)
    return batch_from_sequences([examples[i] for i in indices], *rounding)


@torch.inference_mode()
def predict_logits(
    model: BertClassifier,
    examples: Sequence[Packed],
    batch_size: int = 64,
    progress: bool | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Logits for every example, in input order, on length-sorted padding-free batches.

    Runs on the model's device, under autocast at a resolved ``precision`` (see
    :mod:`bertfit.precision`). ``progress`` None shows a bar when :mod:`bertfit.progress` says
    so (and the work is slow).
    """
    logits = np.zeros((len(examples), model_num_outputs(model)), dtype=np.float32)
    for batch, batch_logits in predicted_batches(model, examples, batch_size, progress, precision):
        logits[batch] = batch_logits.float().cpu().numpy()
    return logits


@torch.inference_mode()
def predicted_batches(
    model: BertClassifier,
    examples: Sequence[Packed],
    batch_size: int = 64,
    progress: bool | None = None,
    precision: str = "fp32",
    desc: str = "evaluating",
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``(indices, logits)`` of each length-sorted padding-free batch of ``examples``, the
    model in eval mode (restored afterwards) and under autocast at ``precision``; what
    :func:`predict_logits` gathers, for callers that read more of each forward pass."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = sorted_batches(example_lengths(examples), batch_size)
    try:
        for batch in progress_bar(batches, desc=desc, unit="batch", show=progress):
            flat = padding_free_batch(examples, batch).to(device)
            with autocast(precision, device):
                logits = model(padding_free=flat)
            yield batch, logits
    finally:
        model.train(was_training)


def model_num_outputs(model: BertClassifier) -> int:
    """Number of logits the classifier produces."""
    return model.num_classes


class TextClassifier:
    """A classifier model, its tokenizer and its label names, used on raw strings.

    ``info.problem_type`` left None is filled in from the model's.
    """

    def __init__(
        self, model: BertClassifier, tokenizer: WordpieceTokenizer, info: ClassifierInfo
    ) -> None:
        if info.problem_type is None:
            info.problem_type = model.problem_type
        elif info.problem_type != model.problem_type:
            raise ValueError(
                f"info.problem_type {info.problem_type!r} differs from the model's "
                f"{model.problem_type!r}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.processor = TextProcessor(tokenizer, info.max_seq_length, info.truncator)
        self.source: str | None = None  # the directory it was loaded from, for messages

    @property
    def input_names(self) -> list[str]:
        """The text columns, in segment order."""
        return list(self.info.input_names)

    @property
    def label_names(self) -> list[str]:
        """The class names in class order (the exported predictor has the same attribute)."""
        return list(self.info.label_names)

    @property
    def problem_type(self) -> ProblemType:
        """What the model's outputs mean (:mod:`bertfit.problem`)."""
        return self.model.problem_type

    @property
    def padding_id(self) -> int:
        """Id of the padding token."""
        return self.tokenizer.special_tokens_dict["padding_id"]

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TextClassifier:
        """Load a directory written by :meth:`save_pretrained` (a run's ``model/``)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: model directory not found")
        info_path = directory / BERTFIT_FILE
        if not info_path.is_file():
            raise CheckpointError(f"{directory}: no {BERTFIT_FILE}; not a bertfit model directory")
        info = dataclass_from_dict(ClassifierInfo, read_json(info_path), str(info_path))
        model = load_classifier(directory)  # its problem type is config.json's
        if info.problem_type not in (None, model.problem_type):
            raise CheckpointError(
                f"{info_path}: problem_type {info.problem_type!r} differs from config.json's "
                f"{model.problem_type!r}"
            )
        if model.num_classes != len(info.label_names):
            raise CheckpointError(
                f"{directory}: the model has {model.num_classes} outputs but {BERTFIT_FILE} "
                f"names {len(info.label_names)} labels"
            )
        tokenizer = WordpieceTokenizer(directory / VOCAB_FILE_NAME, lower_case=info.lower_case)
        check_temperature(info.temperature, f"{info_path}: temperature")
        check_thresholds(info.thresholds, len(info.label_names), f"{info_path}: thresholds")
        classifier = cls(model, tokenizer, info)
        classifier.source = str(directory)
        return classifier

    @property
    def temperature(self) -> float:
        """The softmax temperature of calibrated probabilities (1, said once, when none was
        fitted)."""
        if self.info.temperature is None:
            if self.problem_type != REGRESSION:
                note_uncalibrated(self.source or f"this {self.info.task} model", self)
            return 1.0
        return self.info.temperature

    @property
    def thresholds(self) -> np.ndarray | None:
        """A multi-label model's decision thresholds, one per label (None: 0.5 each)."""
        if self.info.thresholds is None:
            return None
        return np.asarray(self.info.thresholds, dtype=np.float64)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the model directory atomically: it is complete or left as it was.

        It holds Hugging Face's ``config.json`` and ``model.safetensors``, the vocabulary with
        transformers' ``tokenizer_config.json`` and ``special_tokens_map.json``, and
        ``bertfit.json``. A run adds its model card (``README.md``, see
        :mod:`bertfit.model_card`) once its results are final.
        """
        directory = Path(directory)
        staging = make_staging_dir(directory)
        try:
            save_pretrained(
                self.model,
                staging,
                id2label=dict(enumerate(self.info.label_names)),
            )
            self.tokenizer.save(staging)
            # transformers' own tokenizer files, so that it tokenizes as bertfit does.
            self.tokenizer.save_hf_settings(staging, self.info.max_seq_length)
            write_json(staging / BERTFIT_FILE, asdict(self.info))
            replace_directory(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def encode(self, columns: list[list[str]], progress: bool | None = None) -> list[Packed]:
        """Tokenize and pack text columns into unpadded model inputs.

        Large inputs go in chunks under a progress bar (``progress`` None: as
        :mod:`bertfit.progress` decides); each chunk is still tokenized in parallel.
        """
        sizes = {len(column) for column in columns} if not isinstance(columns, str) else set()
        if len(sizes) != 1 or next(iter(sizes)) <= ENCODE_CHUNK:
            return self.processor.encode(columns)  # small, or malformed: it explains why
        total = sizes.pop()
        packed: list[Packed] = []
        with progress_bar(desc="tokenizing", total=total, unit="ex", show=progress) as bar:
            for start in range(0, total, ENCODE_CHUNK):
                chunk = [column[start : start + ENCODE_CHUNK] for column in columns]
                packed += self.processor.encode(chunk)
                bar.update(len(chunk[0]))
        return packed

    def encode_texts(self, columns: list[list[str]]) -> tuple[list[Packed], np.ndarray | None]:
        """Model inputs for each text, and which text each input belongs to.

        Without windows that is one input per text (owners ``None``); with
        ``info.window_stride`` a long text gives several overlapping windows.
        """
        if self.info.window_stride is None:
            return self.encode(columns), None
        return self.processor.encode_windows(columns, self.info.window_stride)

    def logits(self, columns: list[list[str]], batch_size: int = 64) -> np.ndarray:
        """Logits [n, num_classes] for n examples given as text columns."""
        inputs, owners = self.encode_texts(columns)
        logits = predict_logits(self.model, inputs, batch_size)
        return mean_by_owner(logits, owners, len(columns[0]))

    def explain(
        self,
        texts,
        method: str = "integrated_gradients",
        target: int | str | None = None,
        n_steps: int | None = None,
    ) -> Explanation:
        """Word attributions of one input row (one text per input column, or a mapping from
        column name to text) toward ``target``: a label
        name or index (default: the predicted class; a multi-label model's most probable label).

        ``method`` is ``"integrated_gradients"`` (Captum, the ``explain`` extra; ``n_steps``
        path steps) or ``"occlusion"``. Returns a :class:`bertfit.explain.Explanation`.
        """
        texts = row_texts(texts, self.info.input_names)
        packing = self.explain_packing()
        if check_method(method, METHODS) == "occlusion":
            return explain_by_occlusion(packing, texts, self.logits_of_packed, target)
        return explain_by_gradients(packing, texts, self.model, target, n_steps)

    def explain_packing(self) -> Packing:
        """How this classifier packs a row, for :mod:`bertfit.explain`."""
        return Packing(
            tokenizer=self.tokenizer,
            seq_length=self.info.max_seq_length,
            special_tokens=self.tokenizer.special_tokens_dict,
            stride=self.info.window_stride,
            input_names=list(self.info.input_names),
            label_names=list(self.info.label_names),
            problem_type=self.problem_type,
            temperature=self.temperature,
            truncator=self.info.truncator,
            thresholds=self.info.thresholds,
        )

    def logits_of_packed(self, examples: list[Packed], batch_size: int = 64) -> np.ndarray:
        """Logits of already packed inputs, in order."""
        return predict_logits(self.model, examples, batch_size)

    def predict(
        self, columns: list[list[str]], batch_size: int = 64, calibrated: bool = True
    ) -> list[dict]:
        """One dict per example: ``label``, ``class_id``, ``probabilities``, ``logits`` (a
        regression model: ``score`` and ``logits``; a multi-label one: ``labels``, each label's
        probability by name, ``logits``), as :func:`bertfit.predictions.prediction_rows`
        gives them to every predictor.

        The probabilities are calibrated (``softmax(logits / temperature)``, or the sigmoid of
        a multi-label model); ``calibrated`` False gives the raw ones. A multi-label model's
        labels are chosen at its temperature and thresholds either way.
        """
        logits = self.logits(columns, batch_size)
        temperature = self.temperature
        return prediction_rows(
            logits,
            self.problem_type,
            self.info.label_names,
            temperature if calibrated else 1.0,
            self.thresholds,
            temperature,
        )
