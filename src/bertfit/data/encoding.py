"""Encode examples of any size into a compact store, one chunk of texts at a time.

The source hands out its text columns in chunks (:meth:`TextExamples.iter_chunks`, or
:meth:`FileExamples.iter_chunks`, which reads them from disk); each chunk is tokenized by
the ``tokenizers`` batch API, which runs in parallel on all cores in Rust, packed with
vectorised numpy and appended to a :class:`~bertfit.text.ragged.RaggedBuilder`. Only one
chunk of strings and of Python id lists is alive at any time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from bertfit.progress import bar as progress_bar
from bertfit.text.processor import TextProcessor
from bertfit.text.ragged import SPILL_BYTES, RaggedBuilder, RaggedPacked

# Rows tokenized at once: large enough to keep every core busy in the batch call, small
# enough that a chunk's strings and id lists stay a few tens of MB.
CHUNK_ROWS = 10_000


class ChunkedTexts(Protocol):
    """What :func:`encode_stream` reads: a length and text columns by chunks."""

    def __len__(self) -> int: ...

    def iter_chunks(self, rows: int) -> Iterator[list[list[str]]]: ...


def encode_stream(
    processor: TextProcessor,
    source: ChunkedTexts,
    window_stride: int | None = None,
    progress: bool | None = None,
    chunk_rows: int | None = None,
    spill_bytes: int | None = SPILL_BYTES,
) -> tuple[RaggedPacked, np.ndarray | None]:
    """Tokenize and pack every example of ``source`` into a :class:`RaggedPacked`.

    Without ``window_stride`` each text gives one input and the owners are None; with it a
    long text gives overlapping windows and ``owners[i]`` is the text of input ``i`` (as
    :meth:`TextProcessor.encode_windows`). A large store is memory-mapped from a temporary
    file (see :class:`RaggedBuilder`, ``spill_bytes``). ``chunk_rows`` defaults to
    :data:`CHUNK_ROWS`.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    builder = RaggedBuilder(spill_bytes)
    owners: list[np.ndarray] = []
    done = 0
    with progress_bar(desc="tokenizing", total=len(source), unit="ex", show=progress) as bar:
        for columns in source.iter_chunks(chunk_rows):
            if window_stride is None:
                processor.encode_into(builder, columns)
            else:
                windows, rows = processor.encode_windows(columns, window_stride)
                builder.append_packed(windows)
                owners.append(rows + done)
            done += len(columns[0])
            bar.update(len(columns[0]))
    if window_stride is None:
        return builder.build(), None
    joined = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    return builder.build(), joined
