"""What an explanation holds, and how a predictor's row becomes one.

An :class:`Explanation` gives, for every word of every input text, a signed attribution
toward the explained label (by default the predicted one; a multi-label model's most probable
label), chosen by name or index with :func:`target_index`: positive words pushed the model
toward it, negative ones away. It also carries the label and the class probabilities
(calibrated with the model's temperature, as ``predict`` gives them), and a multi-label model's
chosen ``labels``. ``to_dict()`` is what ``bertfit explain
--json`` prints and what ``POST /explain`` answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bertfit.errors import ConfigError
from bertfit.explain.words import WordRow
from bertfit.probabilities import chosen_labels, sigmoid, softmax
from bertfit.problem import MULTI_LABEL, REGRESSION, ProblemType

METHODS = ("integrated_gradients", "occlusion")


@dataclass
class WordAttribution:
    """One word: its text, its span in the input text and its attribution."""

    text: str
    start: int
    end: int
    attribution: float
    # False for a word trimmed away before the model saw it (its attribution is 0).
    seen: bool = True


@dataclass
class TextAttributions:
    """One input text (``name`` is its column, e.g. ``sentence1``) and its words."""

    name: str
    text: str
    words: list[WordAttribution]


@dataclass
class Explanation:
    """Word attributions of one input row toward class ``class_id``; see the module docs."""

    method: str
    label: str | None
    class_id: int
    probabilities: list[float] | None
    logits: list[float]
    texts: list[TextAttributions]
    # Integrated gradients only: the explained logit minus its value at the baseline, which
    # the attributions add up to.
    baseline_difference: float | None = None
    score: float | None = None  # regression models: the predicted score
    # Multi-label models: the labels whose probability reaches their threshold, as predict
    # chooses them (at the model's temperature); the explained label need not be one of them.
    labels: list[str] | None = None

    @property
    def words(self) -> list[WordAttribution]:
        """Every word of every text, in order."""
        return [word for text in self.texts for word in text.words]

    @property
    def attributions(self) -> np.ndarray:
        """Every word's attribution, in order."""
        return np.asarray([word.attribution for word in self.words], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def check_method(method: str, available: tuple[str, ...]) -> str:
    """``method`` if this predictor can run it, else a :class:`ConfigError` saying what can."""
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; expected one of {METHODS}")
    if method not in available:
        raise ConfigError(
            f"{method} needs the PyTorch model (a run or model directory); this predictor "
            f"offers {', '.join(available)}"
        )
    return method


def target_index(
    target: int | str | None, label_names: list[str], problem_type: ProblemType
) -> int | None:
    """The output to explain: ``target`` given as a label name or an index (None: the
    predicted one). Raises :class:`ConfigError` for an unknown label or a regression model."""
    if target is None:
        return None
    if problem_type == REGRESSION:
        raise ConfigError("a regression model has one score and no labels to explain toward")
    if isinstance(target, str):
        if target not in label_names:
            raise ConfigError(f"unknown label {target!r}; expected one of {label_names}")
        return label_names.index(target)
    if isinstance(target, bool) or not 0 <= int(target) < len(label_names):
        raise ConfigError(f"target {target!r} is not a label index below {len(label_names)}")
    return int(target)


def build_explanation(
    row: WordRow,
    input_names: list[str],
    label_names: list[str],
    problem_type: ProblemType,
    method: str,
    logits: np.ndarray,
    scores: np.ndarray,
    target: int,
    seen: np.ndarray,
    temperature: float,
    baseline_difference: float | None = None,
    thresholds: list[float] | None = None,
) -> Explanation:
    """Put a method's per-word ``scores`` and the row's ``logits`` into an :class:`Explanation`.

    A regression model gets its ``score`` and no label or probabilities; a multi-label model
    its chosen ``labels`` (at ``thresholds``, 0.5 each where None).
    """
    texts = [TextAttributions(name, text, []) for name, text in zip(input_names, row.texts)]
    for word, score, was_seen in zip(row.words, scores, seen):
        text = row.texts[word.segment]
        texts[word.segment].words.append(
            WordAttribution(
                text[word.start : word.end], word.start, word.end, float(score), bool(was_seen)
            )
        )
    logits = np.asarray(logits, dtype=np.float64)
    regression = problem_type == REGRESSION
    # A multi-label model's labels each have their own sigmoid; the target is one label.
    multi_label = problem_type == MULTI_LABEL
    probability = sigmoid if multi_label else softmax
    chosen = None
    if multi_label:
        mask = chosen_labels(logits[None, :], temperature, thresholds)[0]
        chosen = [name for name, keep in zip(label_names, mask) if keep]
    return Explanation(
        method=method,
        label=None if regression else label_names[target],
        class_id=int(target),
        probabilities=None if regression else probability(logits, temperature).tolist(),
        logits=logits.tolist(),
        texts=texts,
        baseline_difference=baseline_difference,
        score=float(logits[0]) if regression else None,
        labels=chosen,
    )


def row_texts(inputs, input_names: list[str]) -> list[str]:
    """The texts of one row, from a mapping of column name to text or a sequence of texts.

    Raises :class:`ConfigError` naming the missing, unknown or non-string column.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(input_names))
        if unknown:
            raise ConfigError(f"unknown input column {unknown[0]!r}; expected {input_names}")
        missing = [name for name in input_names if name not in inputs]
        if missing:
            raise ConfigError(f"missing input column {missing[0]!r}")
        texts = [inputs[name] for name in input_names]
    else:
        texts = list(inputs)
        if len(texts) != len(input_names):
            raise ConfigError(
                f"expected {len(input_names)} text(s) ({', '.join(input_names)}), got {len(texts)}"
            )
    for name, text in zip(input_names, texts):
        if not isinstance(text, str):
            kind = type(text).__name__
            raise ConfigError(f"input column {name!r}: expected a string, got {kind}")
    return texts
