"""One input row split into whole words, and packed into model inputs that remember them.

BERT sees WordPieces (``unbelievably`` -> ``un ##bel ##ie ##va ##bly``); people read words. A
:class:`WordRow` keeps, for each text of one input row, its words (character spans and their
WordPiece ids). :meth:`WordRow.pack` packs the row exactly as the classifier does (trimmed, or
cut into windows) and also returns, for every packed position, which token of the row it holds,
so that scores given to packed positions can be summed back into words
(:meth:`WordRow.word_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertfit.text.packing import DEFAULT_TRUNCATOR, PackedExample, pack_example, window_segments
from bertfit.text.tokenizer import UNK_TOKEN, WordpieceTokenizer

#: Key of a special token ([CLS], [SEP]) in the position track: it belongs to no word.
SPECIAL = -1


@dataclass
class Word:
    """One word of one text: its span ``text[start:end]`` and its WordPiece ids."""

    segment: int
    start: int
    end: int
    token_ids: list[int]


class WordRow:
    """The texts of one input row (one per input column), split into words."""

    def __init__(self, tokenizer: WordpieceTokenizer, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.words = [
            Word(segment, start, end, ids)
            for segment, text in enumerate(self.texts)
            for start, end, ids in tokenizer.words(text)
        ]
        # Token k of the row (all segments end to end) belongs to word self.token_word[k].
        self.token_word = np.asarray(
            [index for index, word in enumerate(self.words) for _ in word.token_ids],
            dtype=np.int64,
        )

    def segments(self, masked_word: int | None = None, mask_id: int = 0) -> list[list[int]]:
        """Token ids of each text; the tokens of ``masked_word`` become ``mask_id``."""
        segments: list[list[int]] = [[] for _ in self.texts]
        for index, word in enumerate(self.words):
            ids = [mask_id] * len(word.token_ids) if index == masked_word else word.token_ids
            segments[word.segment].extend(ids)
        return segments

    def token_keys(self) -> list[list[int]]:
        """Each text's tokens as row token numbers (0, 1, ... over all texts end to end)."""
        keys: list[list[int]] = [[] for _ in self.texts]
        for key, index in enumerate(self.token_word):
            keys[self.words[index].segment].append(key)
        return keys

    def pack(
        self,
        seq_length: int,
        special_tokens: dict[str, int],
        stride: int | None,
        truncator: str = DEFAULT_TRUNCATOR,
    ) -> tuple[list[PackedExample], list[list[int]]]:
        """The model inputs of this row (one, or one per window with a ``stride``), and for
        each the row token number at every position (:data:`SPECIAL` for [CLS] and [SEP]).

        The inputs are what the classifier itself packs from these texts.
        """
        examples = pack_row(self.segments(), seq_length, special_tokens, stride, truncator)
        keys = pack_row(
            self.token_keys(),
            seq_length,
            {"start_of_sequence_id": SPECIAL, "end_of_segment_id": SPECIAL},
            stride,
            truncator,
        )
        return examples, [ids for ids, _ in keys]

    def word_scores(self, keys: list[list[int]], scores: list[np.ndarray]) -> np.ndarray:
        """Sum per-position ``scores`` of packed inputs (positions given by ``keys``) into one
        score per word; words the model never saw (trimmed away) get 0."""
        totals = np.zeros(len(self.words), dtype=np.float64)
        for window_keys, window_scores in zip(keys, scores):
            window_keys = np.asarray(window_keys, dtype=np.int64)
            real = window_keys != SPECIAL
            np.add.at(totals, self.token_word[window_keys[real]], window_scores[: len(real)][real])
        return totals

    def seen(self, keys: list[list[int]]) -> np.ndarray:
        """Whether each word has at least one token in the packed inputs."""
        flat = np.asarray([k for window in keys for k in window if k != SPECIAL], dtype=np.int64)
        seen = np.zeros(len(self.words), dtype=bool)
        seen[self.token_word[flat]] = True
        return seen


def pack_row(
    segments: list[list[int]],
    seq_length: int,
    special_tokens: dict[str, int],
    stride: int | None,
    truncator: str = DEFAULT_TRUNCATOR,
) -> list[PackedExample]:
    """Pack one row's segments as :class:`~bertfit.text.processor.TextProcessor` does: trimmed
    to ``seq_length`` by ``truncator`` without a ``stride``, else one input per window."""
    windows = [segments] if stride is None else window_segments(segments, seq_length, stride)
    return [pack_example(window, seq_length, special_tokens, truncator) for window in windows]


def mask_id(special_tokens: dict[str, int], tokenizer: WordpieceTokenizer) -> int:
    """The id that occlusion puts in place of a word: [MASK], or [UNK] in a vocabulary
    without [MASK] (both stand for a word the model does not see)."""
    if "mask_id" in special_tokens:
        return special_tokens["mask_id"]
    return tokenizer.token_to_id(UNK_TOKEN)
