"""Evaluation: encode labelled examples, predict them, and score them with the task's metrics.

How records name the metrics is :func:`bertfit.train.metrics.metric_prefix`; evaluating a saved
run on its own splits is :func:`bertfit.train.run.evaluate_run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertfit.data.encoding import ChunkedTexts, encode_stream
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import TaskSpec
from bertfit.inference import Packed, TextClassifier, mean_by_owner, predict_logits
from bertfit.probabilities import chosen_labels
from bertfit.problem import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from bertfit.temperature import calibration_metrics
from bertfit.train.metrics import compute_metrics


@dataclass
class EncodedExamples:
    """Packed model inputs with the labels of their texts.

    Without windows each input is one text (``owners`` None). With windows a long text gives
    several inputs; ``owners[i]`` is the text of input ``i``, which trains with that text's
    label, and evaluation averages a text's window logits before comparing with its label.
    ``inputs`` is a :class:`~bertfit.text.ragged.RaggedPacked` when made by
    :func:`encode_examples`, or any sequence of packed pairs.
    """

    inputs: Sequence[Packed]
    labels: np.ndarray
    owners: np.ndarray | None = None
    # Per input (each window its own row): what a training loss other than the task's learns
    # from besides the labels, such as a teacher's logits when distilling.
    soft_targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def input_labels(self) -> np.ndarray:
        """The label of every input (its text's label)."""
        return self.labels if self.owners is None else self.labels[self.owners]


def encode_examples(
    classifier: TextClassifier,
    task: TaskSpec,
    examples: TextExamples | ChunkedTexts,
    progress: bool | None = None,
) -> EncodedExamples:
    """Tokenize and pack labelled examples (float targets for regression tasks).

    The texts are encoded a chunk at a time into a compact store (see
    :func:`bertfit.data.encoding.encode_stream`), so a large file never lives in memory as
    Python strings or lists.
    """
    # Class ids; a regression's scores and a multi-label task's 0/1 rows are floats.
    dtype = np.int64 if task.problem_type == SINGLE_LABEL else np.float32
    labels = np.asarray(examples.labels, dtype=dtype)
    inputs, owners = encode_stream(
        classifier.processor, examples, classifier.info.window_stride, progress
    )
    return EncodedExamples(inputs, labels, owners)


def logits_of_encoded(
    classifier: TextClassifier,
    data: EncodedExamples,
    batch_size: int = 64,
    progress: bool | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Logits of encoded examples, one row per text (a windowed text's windows averaged)."""
    logits = predict_logits(classifier.model, data.inputs, batch_size, progress, precision)
    return mean_by_owner(logits, data.owners, len(data.labels))


def predictions_of(
    task: TaskSpec,
    logits: np.ndarray,
    temperature: float = 1.0,
    thresholds: np.ndarray | None = None,
) -> np.ndarray:
    """Class ids of ``logits``, the scores themselves for a regression task, or a multi-label
    task's 0/1 rows: the labels whose ``sigmoid(logits / temperature)`` reaches their
    ``thresholds`` (0.5 each when None, as in training's evaluations)."""
    if task.problem_type == MULTI_LABEL:
        return chosen_labels(logits, temperature, thresholds).astype(np.int8)
    return logits[:, 0] if task.problem_type == REGRESSION else logits.argmax(axis=-1)


def evaluate_encoded(
    classifier: TextClassifier,
    task: TaskSpec,
    data: EncodedExamples,
    batch_size: int = 64,
    calibration: bool = False,
) -> dict[str, float]:
    """The task's metrics of ``classifier`` on already encoded examples.

    With ``calibration`` (classification tasks) also ``ece`` and ``nll`` before and after the
    model's temperature: ``ece_before``, ``ece_after``, ``nll_before``, ``nll_after``.
    """
    logits = logits_of_encoded(classifier, data, batch_size)
    return score_logits(classifier, task, logits, data.labels, calibration)


def decisions_of(classifier: TextClassifier, task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """:func:`predictions_of` as ``classifier`` decides: a multi-label model at its own
    temperature and fitted thresholds."""
    if task.problem_type != MULTI_LABEL:
        return predictions_of(task, logits)
    return predictions_of(task, logits, classifier.temperature, classifier.thresholds)


def score_logits(
    classifier: TextClassifier,
    task: TaskSpec,
    logits: np.ndarray,
    labels: np.ndarray,
    calibration: bool = False,
) -> dict[str, float]:
    """The task's metrics of ``logits`` (one row per text) against ``labels``; see
    :func:`evaluate_encoded` for ``calibration``."""
    scores = compute_metrics(task.metrics, decisions_of(classifier, task, logits), labels)
    if calibration and task.problem_type != REGRESSION:
        before = calibration_metrics(logits, labels)
        after = calibration_metrics(logits, labels, classifier.temperature)
        for name in ("ece", "nll"):
            scores[f"{name}_before"] = before[name]
            scores[f"{name}_after"] = after[name]
    return scores


def evaluate_examples(
    classifier: TextClassifier,
    task: TaskSpec,
    examples: TextExamples,
    batch_size: int = 64,
    calibration: bool = False,
) -> dict[str, float]:
    """The task's metrics of ``classifier`` on labelled text examples (see
    :func:`evaluate_encoded` for ``calibration``)."""
    return evaluate_encoded(
        classifier, task, encode_examples(classifier, task, examples), batch_size, calibration
    )
