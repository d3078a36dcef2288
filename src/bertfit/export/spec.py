"""``classifier.json``: what an exported model needs besides its weights to classify raw strings.

The task's text columns, label names and problem type, the tokenizer (vocabulary file and
normalisation settings) and the packing settings, and the model file's inputs and output.
Standard library only, like the rest of the runtime's imports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertfit.config import dataclass_from_dict, read_json
from bertfit.errors import CheckpointError, ConfigError
from bertfit.probabilities import check_temperature, check_thresholds
from bertfit.problem import stored_problem_type
from bertfit.text.tokenizer import VOCAB_FILE_NAME

#: The three packed inputs every exported model takes, int64 [batch, sequence].
MODEL_INPUTS = ["input_word_ids", "input_mask", "input_type_ids"]
MODEL_OUTPUT = "logits"
#: ``packing.truncation`` values: ``bertfit.text.packing.TRUNCATORS``, spelled out to keep
#: this module standard library only.
TRUNCATIONS = ("round_robin", "waterfall")


@dataclass
class TokenizerSpec:
    """BERT WordPiece settings: ``bertfit.text.WordpieceTokenizer(vocab_file, lower_case)``."""

    lower_case: bool
    vocab_file: str = VOCAB_FILE_NAME
    type: str = "bert-wordpiece"
    unk_token: str = "[UNK]"
    max_input_chars_per_word: int = 100


@dataclass
class PackingSpec:
    """``[CLS] a [SEP] b [SEP]`` packing: the longest packed length and how to trim to it.

    ``truncation`` is the training run's ``truncator`` (``round_robin`` or ``waterfall``); an
    export written before it could be chosen says ``round_robin`` or nothing, both round robin.
    """

    seq_length: int
    special_tokens: dict[str, int]
    truncation: str = "round_robin"
    # Texts longer than seq_length: None trims them; a number splits them into overlapping
    # windows this many tokens apart whose logits are averaged per text (as in training).
    window_stride: int | None = None


@dataclass
class ModelSpec:
    """The model file, its inputs (int64 [batch, sequence]) and its output [batch, classes]."""

    format: str
    file: str
    num_classes: int
    precision: str
    inputs: list[str] = field(default_factory=lambda: list(MODEL_INPUTS))
    output: str = MODEL_OUTPUT


@dataclass
class ClassifierSpec:
    """Everything in ``classifier.json``."""

    task: str
    input_names: list[str]
    label_names: list[str]
    tokenizer: TokenizerSpec
    packing: PackingSpec
    model: ModelSpec
    # Softmax temperature of calibrated probabilities (from the run); None: not calibrated.
    temperature: float | None = None
    # What the logits mean (bertfit.problem). An export written before it was recorded has
    # none: reading it fills in bertfit.problem.legacy_problem_type's answer.
    problem_type: str | None = None
    # A multi-label model's decision thresholds, one per label (from the run); None: 0.5 each.
    thresholds: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def read(cls, path: Path) -> ClassifierSpec:
        """Read and validate ``classifier.json``; errors name the file and key."""
        try:
            spec = dataclass_from_dict(cls, read_json(path), str(path))
        except ConfigError as error:
            raise CheckpointError(str(error)) from None
        spec.validate(str(path))
        return spec

    def validate(self, where: str) -> None:
        """Refuse settings this runtime cannot honour exactly as training did (and fill in
        the problem type of an export written before it was recorded)."""
        checks = [
            (self.tokenizer.type == "bert-wordpiece", "tokenizer.type must be 'bert-wordpiece'"),
            (self.tokenizer.max_input_chars_per_word == 100, "tokenizer.max_input_chars_per_word"
             " must be 100 (BERT's)"),
            (self.tokenizer.unk_token == "[UNK]", "tokenizer.unk_token must be '[UNK]'"),
            (self.packing.truncation in TRUNCATIONS, f"packing.truncation must be one of "
             f"{list(TRUNCATIONS)}, got {self.packing.truncation!r}"),
            (1 <= len(self.input_names) <= 2, "input_names must name one or two text columns"),
            (len(set(self.input_names)) == len(self.input_names), "input_names repeat a name"),
            (self.packing.seq_length >= len(self.input_names) + 1, "packing.seq_length is too"
             " small for the special tokens"),
            (len(self.label_names) == self.model.num_classes, f"label_names has "
             f"{len(self.label_names)} names for model.num_classes={self.model.num_classes}"),
            (self.model.inputs == MODEL_INPUTS, f"model.inputs must be {MODEL_INPUTS}"),
            (self.model.precision in ("fp32", "int8"), "model.precision must be fp32 or int8"),
            (self.packing.window_stride is None or (
                isinstance(self.packing.window_stride, int)
                and 0 < self.packing.window_stride < self.packing.seq_length
            ), "packing.window_stride must be null or in 1..seq_length-1"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise CheckpointError(f"{where}: {message}")
        check_temperature(self.temperature, f"{where}: temperature")
        check_thresholds(self.thresholds, len(self.label_names), f"{where}: thresholds")
        self.problem_type = stored_problem_type(self.problem_type, self.model.num_classes, where)
