"""Padding-free batches: sequences laid end to end, with what attention needs to split them.

A padded batch of B sequences spends compute on ``B * L - T`` padding tokens in every linear
layer, LayerNorm, activation and dropout. A :class:`PackedBatch` holds only the ``T`` real
tokens, [T] or [T, H]; attention alone works on a padded [B, L] view, built per layer by an
index copy (``token_index``) and read back the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class PackedBatch:
    """B sequences of ``T`` tokens in all, without padding.

    Attributes:
        input_word_ids: [T] token ids, sequence after sequence.
        input_type_ids: [T] segment of each token.
        positions: [T] each token's position within its own sequence.
        token_index: [T] each token's row in the padded [B * L] layout.
        first_token: [B] the row in [T] of each sequence's first ([CLS]) token.
        key_mask: [B, 1, 1, L] True where a key is a real token (for attention).
    """

    input_word_ids: torch.Tensor
    input_type_ids: torch.Tensor
    positions: torch.Tensor
    token_index: torch.Tensor
    first_token: torch.Tensor
    key_mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of sequences B."""
        return self.first_token.shape[0]

    @property
    def max_length(self) -> int:
        """Length L of the longest sequence (the padded width attention uses)."""
        return self.key_mask.shape[-1]

    @property
    def num_tokens(self) -> int:
        """Number of real tokens T."""
        return self.input_word_ids.shape[0]

    def to(self, device: torch.device | str) -> PackedBatch:
        """The same batch on ``device``."""
        return PackedBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def pack_arrays(word_ids: np.ndarray, type_ids: np.ndarray, lengths: np.ndarray) -> PackedBatch:
    """A :class:`PackedBatch` from flat token arrays and each sequence's length."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("a packed batch needs at least one sequence, each of one token or more")
    width = int(lengths.max())
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    # Position of each token in its sequence: a running count reset at every sequence start.
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    key_mask = np.arange(width)[None, :] < lengths[:, None]
    return PackedBatch(
        input_word_ids=torch.from_numpy(np.ascontiguousarray(word_ids, dtype=np.int64)),
        input_type_ids=torch.from_numpy(np.ascontiguousarray(type_ids, dtype=np.int64)),
        positions=torch.from_numpy(positions),
        token_index=torch.from_numpy(rows * width + positions),
        first_token=torch.from_numpy(starts),
        key_mask=torch.from_numpy(key_mask[:, None, None, :]),
    )


def pack_sequences(examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> PackedBatch:
    """A :class:`PackedBatch` from ``(token ids, type ids)`` pairs, one per sequence."""
    lengths = np.fromiter((len(ids) for ids, _ in examples), dtype=np.int64, count=len(examples))
    word_ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids, _ in examples])
    type_ids = np.concatenate([np.asarray(types, dtype=np.int64) for _, types in examples])
    return pack_arrays(word_ids, type_ids, lengths)


class _GatherRows(torch.autograd.Function):
    """``source[index]`` along dim 0 for an ``index`` without repeats.

    ``index_select``'s backward accumulates with ``index_add`` (a scatter-add that runs
    serially on a CPU, in case indices repeat); with distinct rows copying is enough.
    """

    @staticmethod
    def forward(ctx, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = source.shape[0]
        return source.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        source_grad = grad.new_zeros((ctx.rows, *grad.shape[1:]))
        return source_grad.index_copy_(0, index, grad), None


def gather_rows(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (distinct) of ``source``, with a backward that copies instead of adding."""
    return _GatherRows.apply(source, index)
