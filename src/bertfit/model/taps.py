"""Read chosen layers' outputs while an encoder runs, without changing it; run a teacher
alongside a student.

Distillation matches a student's intermediate layers to its teacher's. Two ways:

* Patient Knowledge Distillation (Sun et al. 2019) matches the first-token ([CLS]) vectors:
  the teacher's are read once over the training inputs, the student's at every step, by a
  :class:`FirstTokenTap`.
* TinyBERT (Jiao et al. 2020) matches every token's vector, too many to keep for a whole
  training set: a :class:`TeacherShadow` runs the teacher on each batch the student trains on
  and reads both encoders' layers with :class:`TokenTap`.

The taps read through forward hooks, so every path through the encoder (padded, padding-free,
the padding-free last layer that computes first tokens only, a DDP or FSDP wrapper around it) is
read the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from torch import nn

from bertfit.model.encoder import BertEncoder
from bertfit.model.padding_free import PaddingFreeBatch, gather_rows

Reading = TypeVar("Reading")


class _LayerTap(Generic[Reading]):
    """What :meth:`_read` makes of each of ``layers``' outputs in the latest forward pass.

    Hooks stay on the encoder until :meth:`remove` (or the end of a ``with`` block).
    """

    def __init__(self, encoder: BertEncoder, layers: Sequence[int]) -> None:
        self.layers = list(layers)
        self._readings: dict[int, Reading] = {}
        self._handles = [
            encoder.layers[index].register_forward_hook(self._recorder(index), with_kwargs=True)
            for index in self.layers
        ]

    def _read(self, output: torch.Tensor, args: tuple, kwargs: dict) -> Reading:
        raise NotImplementedError

    def _recorder(self, index: int):
        def record(module, args, kwargs, output: torch.Tensor) -> None:
            self._readings[index] = self._read(output, args, kwargs)

        return record

    def readings(self) -> list[Reading]:
        """One reading per layer of ``layers``, in its order, from the latest forward pass;
        raises if a layer did not run."""
        missing = [index for index in self.layers if index not in self._readings]
        if missing:
            raise RuntimeError(f"layers {missing} have not run since the tap was attached")
        return [self._readings[index] for index in self.layers]

    def remove(self) -> None:
        """Take the hooks off the encoder and drop what was read."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._readings.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()


class FirstTokenTap(_LayerTap[torch.Tensor]):
    """The first-token vector [B, H] of each of ``layers`` of ``encoder`` in its latest forward
    pass, as :meth:`stacked` [B, len(layers), H] in the order of ``layers``."""

    def _read(self, output: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
        return first_token_vectors(output, args, kwargs)

    def stacked(self) -> torch.Tensor:
        """[B, len(layers), H] from the latest forward pass; raises if a layer did not run."""
        return torch.stack(self.readings(), dim=1)


@dataclass
class LayerRows:
    """One layer's output in one forward pass, without padding or spare rows.

    Attributes:
        tokens: [T, H] every real token's vector, sequence after sequence; None where the
            layer computed first tokens only (the padding-free last layer).
        first: [B, H] each sequence's first-token vector.
    """

    tokens: torch.Tensor | None
    first: torch.Tensor


class TokenTap(_LayerTap[LayerRows]):
    """Every real token's vector of each of ``layers`` of ``encoder`` in its latest forward
    pass: :meth:`readings` is one :class:`LayerRows` per layer."""

    def _read(self, output: torch.Tensor, args: tuple, kwargs: dict) -> LayerRows:
        return layer_rows(output, args, kwargs)


class TeacherShadow:
    """Runs ``teacher`` on every batch ``student`` trains on, and reads both encoders' layers:
    student layer ``i`` against teacher layer ``teacher_layers[i]``.

    A forward pre-hook on ``student`` feeds the teacher the student's own inputs (padded or
    padding-free), in evaluation mode, without gradients, under whatever autocast the student runs
    in. The teacher does not run while the student is in evaluation mode (evaluating it needs
    no teacher). The teacher is held here, not as a submodule of ``student``, so it is in
    neither the student's parameters nor its checkpoints.
    """

    def __init__(
        self, student: nn.Module, teacher: nn.Module, teacher_layers: Sequence[int]
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.student_tap = TokenTap(student.encoder, range(len(teacher_layers)))
        self.teacher_tap = TokenTap(teacher.encoder, teacher_layers)
        self._handle = student.register_forward_pre_hook(self._run_teacher, with_kwargs=True)

    def _run_teacher(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not module.training:
            return
        device = next(self.teacher.parameters()).device
        wanted = _input_device(args, kwargs)
        if wanted is not None and wanted != device:
            self.teacher.to(wanted)  # once: the student's inputs stay on one device
        with torch.no_grad():
            self.teacher(*args, **kwargs)

    def pairs(self) -> list[tuple[LayerRows, LayerRows]]:
        """(student, teacher) rows of each matched layer pair in the latest training step."""
        return list(zip(self.student_tap.readings(), self.teacher_tap.readings(), strict=True))

    def remove(self) -> None:
        """Take every hook off the student and the teacher."""
        self._handle.remove()
        self.student_tap.remove()
        self.teacher_tap.remove()


def _input_device(args: tuple, kwargs: dict) -> torch.device | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, PaddingFreeBatch):
            return value.input_word_ids.device
        if torch.is_tensor(value):
            return value.device
    return None


def first_token_vectors(output: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """Each sequence's first-token row [B, H] of a :class:`TransformerLayer`'s ``output``,
    given the arguments it was called with (see ``TransformerLayer.forward``)."""
    mask = _mask_argument(args, kwargs)
    if not isinstance(mask, PaddingFreeBatch):
        return output[:, 0]  # padded [B, L, H]
    return output if _first_only(args, kwargs) else gather_rows(output, mask.first_token)


def layer_rows(output: torch.Tensor, args: tuple, kwargs: dict) -> LayerRows:
    """The real tokens' rows of a :class:`TransformerLayer`'s ``output``, given the arguments
    it was called with: padding (padded path) and spare rows (padding-free path) left out."""
    mask = _mask_argument(args, kwargs)
    first = first_token_vectors(output, args, kwargs)
    if isinstance(mask, PaddingFreeBatch):
        tokens = None if _first_only(args, kwargs) else output[: mask.num_tokens]
    elif mask is None:  # padded without a mask: every position is a token
        tokens = output.flatten(0, 1)
    else:  # the [B, 1, 1, L] key mask: True at real tokens
        tokens = output[mask[:, 0, 0, :]]
    return LayerRows(tokens, first)


def _mask_argument(args: tuple, kwargs: dict):
    return args[1] if len(args) > 1 else kwargs.get("attention_mask")


def _first_only(args: tuple, kwargs: dict) -> bool:
    return bool(args[2] if len(args) > 2 else kwargs.get("first_tokens_only", False))
