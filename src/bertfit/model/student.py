"""A smaller student classifier cut from a fine-tuned teacher: fewer layers, the teacher's weights.

The student has the teacher's own encoder config with ``num_layers`` lowered, and starts as an
exact copy of the teacher's embeddings, of a chosen subset of its Transformer layers (in their
order), of its pooler and of its classification head. Which layers is a choice
(:data:`LAYER_CHOICES`, or explicit indices); ``bench/distill.py`` compares the choices.
"""

from __future__ import annotations

import dataclasses
import math

from bertfit.errors import ConfigError
from bertfit.model.classifier import BertClassifier

#: How the teacher's layers for a ``k``-layer student are chosen, from ``L`` layers:
#: ``spread`` every L/k-th layer ending with the top one (6 -> 3: 1, 3, 5; 6 -> 2: 2, 5; the
#: top layer is the one the pooler and head were fine-tuned on); ``first`` the bottom k
#: (0..k-1, a plain truncation); ``last`` the top k.
LAYER_CHOICES = ("spread", "first", "last")
DEFAULT_LAYER_CHOICE = "spread"


def choose_layers(teacher_layers: int, student_layers: int, choice: str = DEFAULT_LAYER_CHOICE):
    """The teacher's layer indices (increasing) a ``student_layers``-layer student starts from.

    ``choice`` is one of :data:`LAYER_CHOICES` or explicit comma-separated indices
    (``"0,2,4"``), which must number ``student_layers``. Raises :class:`ConfigError` for a
    student that is not smaller than the teacher, or for indices out of range.
    """
    check_student_size(teacher_layers, student_layers)
    if choice == "spread":
        step = teacher_layers / student_layers
        return [math.ceil((i + 1) * step) - 1 for i in range(student_layers)]
    if choice == "first":
        return list(range(student_layers))
    if choice == "last":
        return list(range(teacher_layers - student_layers, teacher_layers))
    layers = parse_layer_list(choice)
    if len(layers) != student_layers:
        raise ConfigError(
            f"init layers {choice!r} name {len(layers)} layers for a {student_layers}-layer student"
        )
    check_layer_indices(layers, teacher_layers)
    return layers


def parse_layer_list(text: str) -> list[int]:
    """``"0,2,4"`` -> ``[0, 2, 4]``; :class:`ConfigError` names a choice it does not know."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"init layers: expected one of {', '.join(LAYER_CHOICES)} or comma-separated "
            f"teacher layer indices such as 0,2,4; got {text!r}"
        ) from None


def check_student_size(teacher_layers: int, student_layers: int) -> None:
    """A student has at least one layer and fewer than its teacher."""
    if not 1 <= student_layers < teacher_layers:
        raise ConfigError(
            f"--layers must be in 1..{teacher_layers - 1} (fewer than the teacher's "
            f"{teacher_layers} layers), got {student_layers}"
        )


def check_layer_indices(layers: list[int], teacher_layers: int) -> None:
    """Indices of distinct teacher layers in increasing order (the student keeps their order)."""
    check_student_size(teacher_layers, len(layers))
    if any(not 0 <= index < teacher_layers for index in layers):
        raise ConfigError(f"init layers {layers}: the teacher's layers are 0..{teacher_layers - 1}")
    if any(a >= b for a, b in zip(layers, layers[1:])):
        raise ConfigError(f"init layers {layers} must be distinct and increasing")


def build_student(teacher: BertClassifier, layers: list[int]) -> BertClassifier:
    """A classifier with ``len(layers)`` layers whose weights are copies of ``teacher``'s:
    embeddings, the teacher's layers ``layers`` (student layer ``j`` = teacher layer
    ``layers[j]``), pooler and head. The student is in training mode on the CPU."""
    check_layer_indices(list(layers), teacher.config.num_layers)
    config = dataclasses.replace(teacher.config, num_layers=len(layers))
    student = BertClassifier(
        config, teacher.num_classes, teacher.dropout_rate, teacher.problem_type
    )
    student.load_state_dict(student_state_dict(teacher.state_dict(), layers), strict=True)
    return student


def student_state_dict(teacher_state: dict, layers: list[int]) -> dict:
    """The teacher's tensors renamed for a student of ``layers``; other layers are left out."""
    renumber = {str(teacher_index): str(j) for j, teacher_index in enumerate(layers)}
    state = {}
    for name, tensor in teacher_state.items():
        if name.startswith("encoder.layers."):
            index, rest = name.removeprefix("encoder.layers.").split(".", 1)
            if index not in renumber:
                continue
            name = f"encoder.layers.{renumber[index]}.{rest}"
        state[name] = tensor.detach().to("cpu").clone()
    return state
