"""The kind of problem a task is: one field that every layer reads.

A problem type decides the classifier's output count, the loss, the activation, the metrics,
and the fields of each result row (:mod:`bertfit.predictions`). Its values are Hugging Face's
``problem_type`` names, so that ``config.json`` says the same thing to ``transformers``:

- ``"single_label_classification"``: one class per example; one logit per class, softmax,
  cross-entropy.
- ``"regression"``: one real-valued score per example; one output, squared error.
- ``"multi_label_classification"``: any number of labels per example (none included); one
  logit per label, a sigmoid each, binary cross-entropy; a label is chosen when its
  probability reaches its threshold (0.5 until thresholds are fitted on dev).

Users name the kind with the short words of ``--classification`` / ``--regression`` and the
config key ``data.task_type`` (:data:`TaskType`); :data:`TASK_TYPES` maps them. Standard library
only: the data, model and torch-free runtime layers all read this module.
"""

from __future__ import annotations

from typing import Literal, get_args

from bertfit.errors import CheckpointError

#: What a task is; the values are Hugging Face's ``problem_type`` names.
ProblemType = Literal["single_label_classification", "regression", "multi_label_classification"]
SINGLE_LABEL: ProblemType = "single_label_classification"
REGRESSION: ProblemType = "regression"
MULTI_LABEL: ProblemType = "multi_label_classification"
PROBLEM_TYPES: tuple[ProblemType, ...] = get_args(ProblemType)

#: The user's words for a problem type (``data.task_type``, ``--classification``, ...).
TaskType = Literal["classification", "regression", "multi_label"]
TASK_TYPES: dict[str, ProblemType] = {
    "classification": SINGLE_LABEL,
    "regression": REGRESSION,
    "multi_label": MULTI_LABEL,
}


def task_type_of(problem_type: ProblemType) -> str:
    """The user's word (``data.task_type``) for ``problem_type``."""
    return next(word for word, kind in TASK_TYPES.items() if kind == problem_type)


def num_outputs(problem_type: ProblemType, num_labels: int) -> int:
    """How many logits a classifier for ``num_labels`` labels of this problem type has."""
    return 1 if problem_type == REGRESSION else num_labels


def outputs_mismatch(problem_type: str, outputs: int) -> str | None:
    """Why a model with ``outputs`` logits cannot be of ``problem_type``, or None if it can."""
    if problem_type not in PROBLEM_TYPES:
        return f"problem_type must be one of {list(PROBLEM_TYPES)}, got {problem_type!r}"
    if problem_type == REGRESSION and outputs != 1:
        return f"a regression model has one output, not {outputs}"
    if problem_type == SINGLE_LABEL and outputs < 2:
        return (
            f"a single-label classifier needs at least 2 classes, not {outputs} "
            "(a one-output model is a regression)"
        )
    if problem_type == MULTI_LABEL and outputs < 1:
        return "a multi-label classifier needs at least 1 label"
    return None


def legacy_problem_type(outputs: int) -> ProblemType:
    """The problem type of a model saved without one, from its number of outputs.

    The one place a saved model's problem type is guessed: for a ``config.json`` that leaves
    ``problem_type`` unset (``transformers`` may; bertfit always wrote it) and for an export's
    ``classifier.json`` written before the field existed. (A ``bertfit.json`` without it takes
    its ``config.json``'s.) One output is a regression and more are single-label
    classification, as ``transformers`` itself decides for such a model.
    """
    return REGRESSION if outputs == 1 else SINGLE_LABEL


def stored_problem_type(value: object, outputs: int, where: str) -> ProblemType:
    """The problem type a saved model records as ``value`` (None or absent: see
    :func:`legacy_problem_type`), checked against its ``outputs``; a
    :class:`~bertfit.errors.CheckpointError` naming ``where`` if the two disagree."""
    if value is None:
        return legacy_problem_type(outputs)
    if not isinstance(value, str):
        raise CheckpointError(f"{where}: problem_type must be a string, got {value!r}")
    problem = outputs_mismatch(value, outputs)
    if problem is not None:
        raise CheckpointError(f"{where}: {problem}")
    return value
