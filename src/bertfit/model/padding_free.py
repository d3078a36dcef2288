"""Padding-free batches: sequences laid end to end, with what attention needs to split them.

A padded batch of B sequences spends compute on ``B * L - T`` padding tokens in every linear
layer, LayerNorm, activation and dropout. A :class:`PaddingFreeBatch` holds only the ``T`` real
tokens, [T] or [T, H]; attention alone works on a padded [B, L] view, built per layer by an
index copy (``token_index``) and read back the same way.

Optionally the rows are rounded up to a multiple (``row_multiple``) with a few spare rows after
the real tokens. Why: on a CPU, oneDNN builds a matrix-product kernel for every new shape, and a
padding-free batch's token count changes from step to step, so without rounding every step builds
its kernels anew (with AMX, building them took as long as running them). With rounding, a few
row counts recur and their kernels are reused. Spare rows hold token id 0 at position 0 (any
valid input gives finite values), are dropped before attention and never reach an output, so
they receive zero gradient and change no result.

Attention's padded width can be rounded the same way (``length_multiple``): its batched
matrix products are shaped by the longest sequence, which also changes from step to step.
Keys past a sequence's end are masked, so the extra width changes no result either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch


@dataclass
class PaddingFreeBatch:
    """B sequences of ``T`` tokens in all, without padding.

    Attributes:
        input_word_ids: [R] token ids, sequence after sequence, then any spare rows.
        input_type_ids: [R] segment of each token.
        positions: [R] each token's position within its own sequence.
        token_index: [T] each real token's row in the padded [B * L] layout.
        first_token: [B] the row in [R] of each sequence's first ([CLS]) token.
        key_mask: [B, 1, 1, L] True where a key is a real token (for attention).
        longest_sequence: length of the longest sequence, in tokens (known when packing, so
            checking it costs no device work).

    R = T real tokens, plus the spare rows that round R up; L = the longest sequence's length,
    possibly rounded up too (see the module docstring).
    """

    input_word_ids: torch.Tensor
    input_type_ids: torch.Tensor
    positions: torch.Tensor
    token_index: torch.Tensor
    first_token: torch.Tensor
    key_mask: torch.Tensor
    longest_sequence: int

    @property
    def batch_size(self) -> int:
        """Number of sequences B."""
        return self.first_token.shape[0]

    @property
    def max_length(self) -> int:
        """The padded width L attention uses: the longest sequence's length, maybe rounded up."""
        return self.key_mask.shape[-1]

    @property
    def num_tokens(self) -> int:
        """Number of real tokens T."""
        return self.token_index.shape[0]

    @property
    def num_rows(self) -> int:
        """Number of rows R of the batch's [R, H] tensors: T, plus any spare rows."""
        return self.input_word_ids.shape[0]

    @property
    def spare_rows(self) -> int:
        """Rows after the real tokens, there to round the row count up."""
        return self.num_rows - self.num_tokens

    def to(self, device: torch.device | str) -> PaddingFreeBatch:
        """The same batch on ``device``."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{n: t.to(device) for n, t in tensors.items() if torch.is_tensor(t)})


def batch_from_arrays(
    word_ids: np.ndarray,
    type_ids: np.ndarray,
    lengths: np.ndarray,
    row_multiple: int = 1,
    length_multiple: int = 1,
) -> PaddingFreeBatch:
    """A :class:`PaddingFreeBatch` from flat token arrays and each sequence's length, its rows
    rounded up to a multiple of ``row_multiple`` and attention's width to one of
    ``length_multiple``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError(
            "a padding-free batch needs at least one sequence, each of one token or more"
        )
    longest = int(lengths.max())
    width = longest + -longest % length_multiple
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    # Position of each token in its sequence: a running count reset at every sequence start.
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    key_mask = np.arange(width)[None, :] < lengths[:, None]
    token_index = rows * width + positions
    spare = -len(positions) % row_multiple
    return PaddingFreeBatch(
        input_word_ids=_with_spare_rows(word_ids, spare),
        input_type_ids=_with_spare_rows(type_ids, spare),
        positions=_with_spare_rows(positions, spare),
        token_index=torch.from_numpy(token_index),
        first_token=torch.from_numpy(starts),
        key_mask=torch.from_numpy(key_mask[:, None, None, :]),
        longest_sequence=longest,
    )


def _with_spare_rows(values: np.ndarray, spare: int) -> torch.Tensor:
    """``values`` as an int64 tensor with ``spare`` zeros after them (id 0, segment 0,
    position 0: any valid input, since spare rows never reach an output)."""
    values = np.asarray(values, dtype=np.int64)
    if spare:
        values = np.concatenate([values, np.zeros(spare, dtype=np.int64)])
    return torch.from_numpy(np.ascontiguousarray(values))


def batch_from_sequences(
    examples: Sequence[tuple[Sequence[int], Sequence[int]]],
    row_multiple: int = 1,
    length_multiple: int = 1,
) -> PaddingFreeBatch:
    """A :class:`PaddingFreeBatch` from ``(token ids, type ids)`` pairs, one per sequence, rounded
    as :func:`batch_from_arrays` rounds."""
    lengths = np.fromiter((len(ids) for ids, _ in examples), dtype=np.int64, count=len(examples))
    word_ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids, _ in examples])
    type_ids = np.concatenate([np.asarray(types, dtype=np.int64) for _, types in examples])
    return batch_from_arrays(word_ids, type_ids, lengths, row_multiple, length_multiple)


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
