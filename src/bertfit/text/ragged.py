"""A compact store of packed examples: flat token arrays and row offsets.

A packed example as two Python lists costs about 36 bytes per token per list (an 8-byte pointer
plus a 28-byte int object for most ids), so a million sentence pairs of ~60 tokens take several
GB. :class:`RaggedPacked` keeps the same examples as one ``int32`` array of word ids, one
``uint8`` array of type ids and ``int64`` offsets: 5 bytes a token. It reads like the list it
replaces (``len(store)``, ``store[i] -> (word_ids, type_ids)`` as numpy views) and gathers whole
batches with vectorised indexing, padded (:meth:`RaggedPacked.gather_padded`, the output of
:func:`~bertfit.text.packing.pad_packed`) or flat (:meth:`RaggedPacked.gather_flat`).

:class:`RaggedBuilder` appends chunks. Past ``spill_bytes`` it writes the tokens to anonymous
temporary files and the finished store memory-maps them, so resident memory stays flat however
large the data: the kernel pages the tokens in as batches touch them and may drop them again.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

IDS_DTYPE = np.int32
TYPES_DTYPE = np.uint8
# Tokens held in memory before a builder moves them to disk (5 bytes each): 128 MiB.
SPILL_BYTES = 128 * 2**20
_BYTES_PER_TOKEN = np.dtype(IDS_DTYPE).itemsize + np.dtype(TYPES_DTYPE).itemsize


class RaggedPacked(Sequence):
    """Packed examples (word ids and type ids, unpadded) in flat arrays; read-only.

    Args:
        ids: every example's word ids, one after the other (``int32``).
        type_ids: the type id of every token (``uint8``), aligned with ``ids``.
        offsets: ``n + 1`` positions; example ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    Raises:
        ValueError: if the arrays do not describe the same tokens.
    """

    def __init__(self, ids: np.ndarray, type_ids: np.ndarray, offsets: np.ndarray) -> None:
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0:
            raise ValueError("offsets must be one-dimensional and start at 0")
        if len(ids) != len(type_ids) or offsets[-1] != len(ids):
            raise ValueError(
                f"{len(ids)} word ids, {len(type_ids)} type ids and offsets ending at "
                f"{offsets[-1]} must agree"
            )
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must not decrease")
        self.ids = ids
        self.type_ids = type_ids
        self.offsets = offsets

    @classmethod
    def from_packed(cls, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> RaggedPacked:
        """The store of examples given as ``(word_ids, type_ids)`` pairs (lists or arrays)."""
        builder = RaggedBuilder(spill_bytes=None)
        builder.append_packed(examples)
        return builder.build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):
        """``(word_ids, type_ids)`` of example ``index`` as views; a slice gives a store."""
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        count = len(self)
        position = int(index)
        if position < 0:
            position += count
        if not 0 <= position < count:
            raise IndexError(f"example {index} out of range for {count} examples")
        start, end = self.offsets[position], self.offsets[position + 1]
        return self.ids[start:end], self.type_ids[start:end]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start, end in itertools.pairwise(self.offsets.tolist()):
            yield self.ids[start:end], self.type_ids[start:end]

    def __eq__(self, other: object) -> bool:
        """Equal to another store or sequence of pairs holding the same examples."""
        if not isinstance(other, RaggedPacked):
            if not isinstance(other, Sequence) or isinstance(other, str):
                return NotImplemented
            other = RaggedPacked.from_packed(other)
        return (
            np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.ids, other.ids)
            and np.array_equal(self.type_ids, other.type_ids)
        )

    __hash__ = None  # mutable arrays inside: equality by value, so no hash

    def __repr__(self) -> str:
        where = "memory-mapped" if isinstance(self.ids, np.memmap) else "in memory"
        return f"RaggedPacked({len(self)} examples, {self.num_tokens} tokens, {where})"

    @property
    def num_tokens(self) -> int:
        """Tokens of all examples together."""
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays (on disk for a memory-mapped store)."""
        return self.ids.nbytes + self.type_ids.nbytes + self.offsets.nbytes

    def lengths(self) -> np.ndarray:
        """Packed length of every example (``int64``)."""
        return np.diff(self.offsets)

    def to_list(self) -> list[tuple[list[int], list[int]]]:
        """The examples as Python lists, the form :meth:`TextProcessor.encode` returns."""
        return [(ids.tolist(), types.tolist()) for ids, types in self]

    def _positions(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Flat token positions of the examples ``indices`` in order, and their lengths."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        ends = np.cumsum(lengths)
        # Position k of the output is token (k - where its example starts there) of that example.
        shift = np.repeat(starts - (ends - lengths), lengths)
        return shift + np.arange(int(ends[-1]) if len(ends) else 0), lengths

    def take(self, indices) -> RaggedPacked:
        """A new in-memory store of the examples ``indices``, in that order."""
        positions, lengths = self._positions(indices)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return RaggedPacked(self.ids[positions], self.type_ids[positions], offsets)

    def gather_flat(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The examples ``indices`` end to end, for attention without padding.

        Returns word ids and type ids (``int64``, ``[total_tokens]``) and ``cu_seqlens``
        (``int32``, ``[len(indices) + 1]``): example ``k`` is ``cu_seqlens[k]:cu_seqlens[k+1]``.
        """
        positions, lengths = self._positions(indices)
        cu_seqlens = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=cu_seqlens[1:])
        ids = self.ids[positions].astype(np.int64)
        return ids, self.type_ids[positions].astype(np.int64), cu_seqlens

    def gather_padded(
        self, indices, padding_id: int, seq_length: int | None = None
    ) -> dict[str, np.ndarray]:
        """``input_word_ids``, ``input_mask``, ``input_type_ids`` of the examples ``indices``.

        The same arrays as :func:`~bertfit.text.packing.pad_packed` on those examples:
        ``int64`` of shape ``[len(indices), L]`` with ``L`` = ``seq_length`` or the longest.

        Raises:
            ValueError: if an example is longer than ``seq_length``.
        """
        positions, lengths = self._positions(indices)
        longest = int(lengths.max()) if len(lengths) else 0
        width = longest if seq_length is None else int(seq_length)
        if longest > width:
            raise ValueError(f"an example has {longest} ids, more than seq_length={width}")
        mask = np.arange(width)[None, :] < lengths[:, None]
        word_ids = np.full((len(lengths), width), padding_id, dtype=np.int64)
        type_ids = np.zeros((len(lengths), width), dtype=np.int64)
        # Row-major boolean indexing fills real positions in the order of the flat tokens.
        word_ids[mask] = self.ids[positions]
        type_ids[mask] = self.type_ids[positions]
        return {
            "input_word_ids": word_ids,
            "input_mask": mask.astype(np.int64),
            "input_type_ids": type_ids,
        }


def example_lengths(examples: Sequence) -> np.ndarray:
    """Packed length of every example of a store or of a list of ``(ids, type_ids)`` pairs."""
    if isinstance(examples, RaggedPacked):
        return examples.lengths()
    return np.fromiter((len(ids) for ids, _ in examples), dtype=np.int64, count=len(examples))


class RaggedBuilder:
    """Collect packed examples chunk by chunk, then :meth:`build` one :class:`RaggedPacked`.

    Chunks are kept as a list and joined once at the end, so building needs the store twice
    at most for a moment. Past ``spill_bytes`` of tokens every chunk goes to an anonymous
    temporary file instead (in ``spill_dir``, default the system's temporary directory) and
    the store is memory-mapped from it: nothing is joined in memory and the files vanish with
    the store. ``spill_bytes=None`` keeps everything in memory.
    """

    def __init__(self, spill_bytes: int | None = SPILL_BYTES, spill_dir: str | None = None):
        self.spill_bytes = spill_bytes
        self.spill_dir = spill_dir
        self._ids: list[np.ndarray] = []
        self._types: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._held_tokens = 0
        self._files = None  # (ids file, type ids file) once spilled
        self._spilled = False

    def __len__(self) -> int:
        return sum(len(lengths) for lengths in self._lengths)

    @property
    def spilled(self) -> bool:
        """Whether the tokens went to disk."""
        return self._spilled

    def append(self, ids: np.ndarray, type_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Add examples given as flat word ids, flat type ids and the length of each."""
        ids = np.ascontiguousarray(ids, dtype=IDS_DTYPE)
        type_ids = np.ascontiguousarray(type_ids, dtype=TYPES_DTYPE)
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(ids) != len(type_ids) or int(lengths.sum()) != len(ids):
            raise ValueError("append: word ids, type ids and lengths do not agree")
        self._lengths.append(lengths)
        if self._files is not None:
            self._write(ids, type_ids)
            return
        self._ids.append(ids)
        self._types.append(type_ids)
        self._held_tokens += len(ids)
        if self.spill_bytes is not None and self._held_tokens * _BYTES_PER_TOKEN > self.spill_bytes:
            self._spill()

    def append_packed(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """Add examples given as ``(word_ids, type_ids)`` pairs."""
        lengths = np.fromiter((len(ids) for ids, _ in examples), np.int64, count=len(examples))
        for index, (ids, types) in enumerate(examples):
            if len(ids) != len(types):
                raise ValueError(f"example {index}: {len(ids)} word ids but {len(types)} type ids")
        total = int(lengths.sum())
        ids = np.fromiter(itertools.chain.from_iterable(e[0] for e in examples), IDS_DTYPE, total)
        types = np.fromiter(
            itertools.chain.from_iterable(e[1] for e in examples), TYPES_DTYPE, total
        )
        self.append(ids, types, lengths)

    def _spill(self) -> None:
        # Anonymous files: unlinked at once, so nothing is left behind even after a crash.
        self._files = tuple(tempfile.TemporaryFile(dir=self.spill_dir) for _ in range(2))
        self._spilled = True
        for ids, types in zip(self._ids, self._types):
            self._write(ids, types)
        self._ids, self._types, self._held_tokens = [], [], 0

    def _write(self, ids: np.ndarray, type_ids: np.ndarray) -> None:
        self._files[0].write(memoryview(ids).cast("B"))
        self._files[1].write(memoryview(type_ids).cast("B"))

    def build(self) -> RaggedPacked:
        """The store of everything appended; the builder is emptied."""
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        self._lengths = []
        if self._files is None or offsets[-1] == 0:
            ids, types = self._joined()
        else:
            ids, types = (_map(handle, dtype) for handle, dtype in zip(self._files, _DTYPES))
            self._files = None
        return RaggedPacked(ids, types, offsets)

    def _joined(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, IDS_DTYPE)
        self._ids = []  # the chunks go as soon as they are joined
        types = np.concatenate(self._types) if self._types else np.zeros(0, TYPES_DTYPE)
        self._types, self._held_tokens = [], 0
        return ids, types


_DTYPES = (IDS_DTYPE, TYPES_DTYPE)


def _map(handle, dtype) -> np.ndarray:
    """A read-only memory map of a whole spill file; the file closes, the mapping stays."""
    handle.flush()
    size = os.fstat(handle.fileno()).st_size
    mapped = np.memmap(handle, dtype=dtype, mode="r", shape=(size // np.dtype(dtype).itemsize,))
    handle.close()  # mmap holds its own descriptor: the unlinked file lives while it is mapped
    return mapped
