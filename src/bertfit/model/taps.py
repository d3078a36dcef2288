"""Read chosen layers' first-token ([CLS]) vectors while an encoder runs, without changing it.

Distillation matches a student's intermediate layers to its teacher's (Patient Knowledge
Distillation, Sun et al. 2019): the teacher's vectors are read once over the training inputs,
the student's at every step. A :class:`FirstTokenTap` collects them through forward hooks, so
every path through the encoder (padded, packed, the packed last layer that computes first
tokens only, a DDP or FSDP wrapper around it) is read the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bertfit.model.encoder import BertEncoder
from bertfit.model.packed import PackedBatch, gather_rows


class FirstTokenTap:
    """The first-token vector [B, H] of each of ``layers`` of ``encoder`` in its latest forward
    pass, as :meth:`stacked` [B, len(layers), H] in the order of ``layers``.

    Hooks stay on the encoder until :meth:`remove` (or the end of a ``with`` block).
    """

    def __init__(self, encoder: BertEncoder, layers: Sequence[int]) -> None:
        self.layers = list(layers)
        self._vectors: dict[int, torch.Tensor] = {}
        self._handles = [
            encoder.layers[index].register_forward_hook(self._recorder(index), with_kwargs=True)
            for index in self.layers
        ]

    def _recorder(self, index: int):
        def record(module, args, kwargs, output: torch.Tensor) -> None:
            self._vectors[index] = first_token_vectors(output, args, kwargs)

        return record

    def stacked(self) -> torch.Tensor:
        """[B, len(layers), H] from the latest forward pass; raises if a layer did not run."""
        missing = [index for index in self.layers if index not in self._vectors]
        if missing:
            raise RuntimeError(f"layers {missing} have not run since the tap was attached")
        return torch.stack([self._vectors[index] for index in self.layers], dim=1)

    def remove(self) -> None:
        """Take the hooks off the encoder and drop what was read."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._vectors.clear()

    def __enter__(self) -> FirstTokenTap:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()


def first_token_vectors(output: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """Each sequence's first-token row [B, H] of a :class:`TransformerLayer`'s ``output``,
    given the arguments it was called with (see ``TransformerLayer.forward``)."""
    mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
    if not isinstance(mask, PackedBatch):
        return output[:, 0]  # padded [B, L, H]
    first_only = args[2] if len(args) > 2 else kwargs.get("first_tokens_only", False)
    return output if first_only else gather_rows(output, mask.first_token)
