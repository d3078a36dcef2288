"""Explain one input row of a predictor: split it into words, score them, build the result.

The PyTorch :class:`~bertfit.inference.TextClassifier` and the exported predictor both call
these with their own tokenizer, packing and model call; the exported one has no gradients and
offers occlusion only.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertfit.explain.explanation import Explanation, build_explanation, target_index
from bertfit.explain.occlusion import LogitsOfPacked, occlusion
from bertfit.explain.words import WordRow, mask_id
from bertfit.problem import ProblemType
from bertfit.text.packing import DEFAULT_TRUNCATOR
from bertfit.text.tokenizer import WordpieceTokenizer


@dataclass
class Packing:
    """What a predictor needs to turn a row into its model inputs, and to name the result."""

    tokenizer: WordpieceTokenizer
    seq_length: int
    special_tokens: dict[str, int]
    stride: int | None
    input_names: list[str]
    label_names: list[str]
    problem_type: ProblemType
    temperature: float = 1.0
    truncator: str = DEFAULT_TRUNCATOR
    # A multi-label model's decision thresholds (None: 0.5 each), to name its chosen labels.
    thresholds: list[float] | None = None

    def target(self, target: int | str | None) -> int | None:
        """``target`` (a label name or index; None: the predicted one) as an output index."""
        return target_index(target, self.label_names, self.problem_type)


def explain_by_occlusion(
    packing: Packing,
    texts: list[str],
    logits_of_packed: LogitsOfPacked,
    target: int | str | None = None,
) -> Explanation:
    """Occlusion scores of each word of ``texts`` (one text per input column) toward
    ``target`` (a label name or index; default: the predicted label)."""
    target = packing.target(target)
    row = WordRow(packing.tokenizer, texts)
    logits, scores, target = occlusion(
        row,
        logits_of_packed,
        packing.seq_length,
        packing.special_tokens,
        packing.stride,
        target,
        packing.truncator,
        mask_id(packing.special_tokens, packing.tokenizer),
    )
    return _build(packing, row, "occlusion", logits, scores, target)


def explain_by_gradients(
    packing: Packing,
    texts: list[str],
    model,
    target: int | str | None = None,
    n_steps: int | None = None,
) -> Explanation:
    """Integrated-gradients attributions of each word of ``texts`` for a ``BertClassifier``
    toward ``target`` (a label name or index; default: the predicted label)."""
    target = packing.target(target)
    # torch and Captum: the exported predictor's occlusion, which imports this module, needs
    # neither.
    from bertfit.explain.integrated_gradients import DEFAULT_STEPS, integrated_gradients

    row = WordRow(packing.tokenizer, texts)
    logits, scores, target, difference = integrated_gradients(
        model,
        row,
        packing.seq_length,
        packing.special_tokens,
        packing.stride,
        target,
        n_steps or DEFAULT_STEPS,
        packing.truncator,
    )
    return _build(packing, row, "integrated_gradients", logits, scores, target, difference)


def _build(packing, row, method, logits, scores, target, difference=None) -> Explanation:
    _, keys = row.pack(
        packing.seq_length, packing.special_tokens, packing.stride, packing.truncator
    )
    return build_explanation(
        row,
        packing.input_names,
        packing.label_names,
        packing.problem_type,
        method,
        logits,
        scores,
        target,
        row.seen(keys),
        packing.temperature,
        difference,
        packing.thresholds,
    )
