"""Tokenizer + packer for a task's text columns: raw strings in, BERT inputs out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bertfit.text.packing import (
    DEFAULT_TRUNCATOR,
    BertPacker,
    PackedExample,
    pack_flat,
    pad_packed,
    window_segments,
)
from bertfit.text.ragged import RaggedBuilder, RaggedPacked
from bertfit.text.tokenizer import WordpieceTokenizer


class TextProcessor:
    """Turn a task's text columns into BERT inputs (the tutorial's ``BertInputProcessor``).

    Column ``i`` becomes segment ``i``: one column for single-sentence tasks, two for pairs.

    Args:
        tokenizer: the WordPiece tokenizer of the model's vocabulary.
        seq_length: packed length, special tokens included.
        truncator: ``"round_robin"`` (default) or ``"waterfall"``: how rows that do not fit
            are cut (see :mod:`bertfit.text.packing`); every encoding method uses it.

    Raises:
        ConfigError: if the vocabulary lacks [CLS], [SEP] or [PAD] (naming the file),
            ``seq_length`` is too small or ``truncator`` is unknown.
    """

    def __init__(
        self,
        tokenizer: WordpieceTokenizer,
        seq_length: int,
        truncator: str = DEFAULT_TRUNCATOR,
    ) -> None:
        self.tokenizer = tokenizer
        self.packer = BertPacker(seq_length, tokenizer.special_tokens_dict, truncator)

    @property
    def seq_length(self) -> int:
        """The packed length, special tokens included."""
        return self.packer.seq_length

    @property
    def truncator(self) -> str:
        """How rows that do not fit are cut: ``"round_robin"`` or ``"waterfall"``."""
        return self.packer.truncator

    def encode(self, columns: Sequence[Sequence[str]]) -> list[PackedExample]:
        """Tokenize and pack each row of ``columns``; the examples are trimmed, not padded.

        Args:
            columns: the text columns, each a sequence of strings of the same length.

        Returns:
            ``(word_ids, type_ids)`` for each row.

        Raises:
            ValueError: if the columns differ in length.
        """
        self._check_columns(columns)
        return self.packer.pack([self.tokenizer.tokenize(column) for column in columns])

    def encode_into(self, builder: RaggedBuilder, columns: Sequence[Sequence[str]]) -> None:
        """Like :meth:`encode` (the same ids), appending the rows to ``builder`` as flat arrays.

        Packing is vectorised, so no Python list per example is made: what is left of a chunk
        once it is appended is its compact arrays.
        """
        self._check_columns(columns)
        packer = self.packer
        segments = [self.tokenizer.tokenize(column) for column in columns]
        builder.append(
            *pack_flat(
                segments,
                self.seq_length,
                packer.start_of_sequence_id,
                packer.end_of_segment_id,
                packer.truncator,
            )
        )

    def encode_ragged(self, columns: Sequence[Sequence[str]]) -> RaggedPacked:
        """:meth:`encode` into a compact in-memory :class:`RaggedPacked`."""
        builder = RaggedBuilder(spill_bytes=None)
        self.encode_into(builder, columns)
        return builder.build()

    @staticmethod
    def _check_columns(columns: Sequence[Sequence[str]]) -> None:
        if isinstance(columns, str) or any(isinstance(column, str) for column in columns):
            # A bare string would be read as a column of characters.
            raise TypeError("columns must be a sequence of columns, each a sequence of strings")
        sizes = [len(column) for column in columns]
        if len(set(sizes)) > 1:
            raise ValueError(f"text columns must have the same number of rows, got {sizes}")

    def encode_windows(
        self, columns: Sequence[Sequence[str]], stride: int
    ) -> tuple[list[PackedExample], np.ndarray]:
        """Like :meth:`encode`, but rows too long for ``seq_length`` become overlapping windows.

        Returns the packed windows and, for each window, the index of the row it came from
        (see :func:`bertfit.text.packing.window_segments`).
        """
        self._check_columns(columns)
        tokenized = [self.tokenizer.tokenize(column) for column in columns]
        examples: list[PackedExample] = []
        owners: list[int] = []
        for row, segments in enumerate(zip(*tokenized)):
            for window in window_segments(segments, self.seq_length, stride):
                examples.extend(self.packer.pack([[segment] for segment in window]))
                owners.append(row)
        return examples, np.asarray(owners, dtype=np.int64)

    def __call__(
        self, columns: Sequence[Sequence[str]], pad_to_longest: bool = False
    ) -> dict[str, np.ndarray]:
        """``input_word_ids``, ``input_mask``, ``input_type_ids`` (int64, ``[rows, length]``).

        ``length`` is ``seq_length``, or the longest packed row when ``pad_to_longest``.
        """
        width = None if pad_to_longest else self.seq_length
        return pad_packed(self.encode(columns), self.packer.padding_id, width)

    def __repr__(self) -> str:
        return (
            f"TextProcessor({self.tokenizer!r}, seq_length={self.seq_length}, "
            f"truncator={self.truncator!r})"
        )
