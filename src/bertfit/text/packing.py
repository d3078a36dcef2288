"""Pack token-id segments into BERT inputs, as Model Garden's ``BertPackInputs`` does.

An example with segments ``a, b, ...`` becomes ``[CLS] a [SEP] b [SEP] ...`` with type id ``i``
on segment ``i`` and on the ``[SEP]`` that closes it (``[CLS]`` has type 0). When the segments do
not fit, they are trimmed before the special tokens are added, so the packed example never
exceeds ``seq_length``. The budget is ``seq_length - 1 - number of segments``, as in
``BertPackInputs``, and it is shared out by one of its two truncators:

``round_robin`` (the default)
    TF Text's ``RoundRobinTrimmer``: one token at a time to each segment that still has some.
``waterfall``
    TF Text's ``WaterfallTrimmer``: segments are kept whole in order and cut where the budget
    runs out; later segments may keep nothing, and still get their ``[SEP]`` and type id.

Padding is a separate step (:func:`pad_packed`) so that batches can be padded to a fixed length
or to their longest example.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np

from bertfit.errors import ConfigError

PackedExample = tuple[list[int], list[int]]

#: How over-long segments are cut (``BertPackInputs(truncator=...)``).
Truncator = Literal["round_robin", "waterfall"]
TRUNCATORS: tuple[str, ...] = get_args(Truncator)
DEFAULT_TRUNCATOR = "round_robin"

_PACK_KEYS = ("start_of_sequence_id", "end_of_segment_id", "padding_id")
# The vocabulary token behind each key, for error messages (as in the tokenizer's dict).
_KEY_TOKENS = {"start_of_sequence_id": "[CLS]", "end_of_segment_id": "[SEP]", "padding_id": "[PAD]"}


def check_truncator(truncator: object, where: str = "truncator") -> str:
    """Return ``truncator`` if it names a truncator, else raise :class:`ConfigError`."""
    if not isinstance(truncator, str) or truncator not in TRUNCATORS:
        raise ConfigError(f"{where}: expected one of {list(TRUNCATORS)}, got {truncator!r}")
    return truncator


def _allocate(lengths: Sequence[int], budget: int) -> list[int]:
    """How many tokens each segment keeps under round-robin allocation of ``budget``.

    Equivalent to handing out one token at a time to each segment that still has tokens, in
    segment order, until the budget runs out. Computed in closed form like TF Text's C++
    kernel: segments short enough to keep whole are filled first (shortest first), the rest
    share what is left evenly, and the remainder goes one each to the earliest of those.
    """
    count = len(lengths)
    used = [0] * count
    left = budget
    unfilled = sorted(range(count), key=lambda i: lengths[i])
    while unfilled and lengths[unfilled[0]] * len(unfilled) <= left:
        index = unfilled.pop(0)
        used[index] = lengths[index]
        left -= lengths[index]
    if unfilled:
        share, extra = divmod(left, len(unfilled))
        for index in sorted(unfilled)[:extra]:
            used[index] = share + 1
        for index in sorted(unfilled)[extra:]:
            used[index] = share
    return used


def round_robin_trim(segments: Sequence[Sequence[int]], budget: int) -> list[list[int]]:
    """Trim ``segments`` to ``budget`` tokens in total, as TF Text's ``RoundRobinTrimmer`` does.

    Tokens are kept from the start of each segment; the budget is dealt out one token per
    segment in turn, skipping segments that are already whole. For example a budget of 5 over
    segments of lengths 3, 4 and 2 keeps 2, 2 and 1 tokens.

    Args:
        segments: token ids of each segment of one example.
        budget: the most tokens the trimmed segments may hold together (``seq_length`` minus
            the special tokens).

    Raises:
        ValueError: if ``budget`` is negative.
    """
    if budget < 0:
        raise ValueError(f"round_robin_trim: budget must be >= 0, got {budget}")
    lengths = [len(segment) for segment in segments]
    if sum(lengths) <= budget:
        return [list(segment) for segment in segments]
    keep = _allocate(lengths, budget)
    return [list(segment[:n]) for segment, n in zip(segments, keep)]


def _waterfall_allocate(lengths: Sequence[int], budget: int) -> list[int]:
    """How many tokens each segment keeps when ``budget`` is poured into them in order."""
    used = []
    for length in lengths:
        kept = min(length, budget)
        used.append(kept)
        budget -= kept
    return used


def waterfall_trim(segments: Sequence[Sequence[int]], budget: int) -> list[list[int]]:
    """Trim ``segments`` to ``budget`` tokens in total, as TF Text's ``WaterfallTrimmer`` does.

    Segments are filled left to right: segment 1 keeps ``min(len1, budget)`` tokens, segment 2
    ``min(len2, budget - kept1)``, and so on, each from its start. For example a budget of 5
    over segments of lengths 3, 4 and 2 keeps 3, 2 and 0 tokens.

    Raises:
        ValueError: if ``budget`` is negative.
    """
    if budget < 0:
        raise ValueError(f"waterfall_trim: budget must be >= 0, got {budget}")
    keep = _waterfall_allocate([len(segment) for segment in segments], budget)
    return [list(segment[:n]) for segment, n in zip(segments, keep)]


_TRIMMERS = {"round_robin": round_robin_trim, "waterfall": waterfall_trim}


def trim_segments(
    segments: Sequence[Sequence[int]], budget: int, truncator: str = DEFAULT_TRUNCATOR
) -> list[list[int]]:
    """Trim ``segments`` to ``budget`` tokens with ``truncator`` (see the module docstring)."""
    return _TRIMMERS[check_truncator(truncator)](segments, budget)


def _special_ids(special_tokens: Mapping[str, int], keys: Sequence[str]) -> list[int]:
    missing = [key for key in keys if key not in special_tokens]
    if missing:
        key = missing[0]
        token = _KEY_TOKENS.get(key, key)
        vocab_file = getattr(special_tokens, "vocab_file", None)
        if vocab_file is not None:
            # The tokenizer's dict leaves out what its vocabulary lacks: name the file.
            raise ConfigError(
                f"{vocab_file}: vocabulary has no {token} token ({key}), which packing needs"
            )
        raise ConfigError(
            f"special_tokens: missing key {key!r} ({token}; has {sorted(special_tokens)})"
        )
    return [int(special_tokens[key]) for key in keys]


def _as_segments(batch):
    """``batch`` as a list of segments: one segment given alone (its rows hold ids) is wrapped."""
    for row in batch:
        if len(row):
            return [batch] if _is_int(row[0]) else batch
    return batch


def _is_int(value: object) -> bool:
    # numpy integers count; bools do not, though Python treats them as ints.
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_seq_length(seq_length: int, num_segments: int) -> None:
    if num_segments < 1:
        raise ValueError("packing needs at least one segment")
    needed = num_segments + 1  # [CLS] plus one [SEP] per segment
    if not _is_int(seq_length) or seq_length < needed:
        raise ConfigError(
            f"seq_length={seq_length!r} is too small for {num_segments} segment(s): "
            f"the special tokens alone take {needed}"
        )


def pack_example(
    segments: Sequence[Sequence[int]],
    seq_length: int,
    special_tokens: Mapping[str, int],
    truncator: str = DEFAULT_TRUNCATOR,
) -> PackedExample:
    """Pack one example's segments into ``([CLS] a [SEP] b [SEP] ..., type ids)``, unpadded.

    The segments are trimmed with ``truncator`` (:func:`round_robin_trim` or
    :func:`waterfall_trim`) so the result has at most ``seq_length`` ids. Segment ``i`` and its
    closing ``[SEP]`` get type id ``i``, also when the segment keeps no token.

    Args:
        segments: one or more lists of token ids (without special tokens).
        seq_length: the longest packed length allowed, special tokens included.
        special_tokens: a dict with ``start_of_sequence_id`` and ``end_of_segment_id``
            (as from ``WordpieceTokenizer.special_tokens_dict``).
        truncator: ``"round_robin"`` (default) or ``"waterfall"``.

    Raises:
        ConfigError: if ``seq_length`` cannot hold the special tokens, a key is missing or
            ``truncator`` is unknown.
    """
    check_truncator(truncator)
    _check_seq_length(seq_length, len(segments))
    cls_id, sep_id = _special_ids(special_tokens, _PACK_KEYS[:2])
    return _pack(segments, seq_length, cls_id, sep_id, truncator)


def _pack(
    segments: Sequence[Sequence[int]],
    seq_length: int,
    cls_id: int,
    sep_id: int,
    truncator: str = DEFAULT_TRUNCATOR,
) -> PackedExample:
    trimmed = _TRIMMERS[truncator](segments, seq_length - len(segments) - 1)
    word_ids = [cls_id]
    type_ids = [0]
    for type_id, segment in enumerate(trimmed):
        word_ids.extend(segment)
        word_ids.append(sep_id)
        type_ids.extend([type_id] * (len(segment) + 1))
    return word_ids, type_ids


def pack_flat(
    segments_batch: Sequence[Sequence[Sequence[int]]],
    seq_length: int,
    cls_id: int,
    sep_id: int,
    truncator: str = DEFAULT_TRUNCATOR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack a batch as :func:`pack_example` does each example, into flat arrays at once.

    Args:
        segments_batch: one entry per segment, each a list over the batch of token-id lists.
        truncator: ``"round_robin"`` (default) or ``"waterfall"``, as for :func:`pack_example`.

    Returns:
        Word ids (``int32``) and type ids (``uint8``) of all packed examples end to end, and
        the packed length of each (``int64``): the input of
        :meth:`bertfit.text.ragged.RaggedBuilder.append`.
    """
    check_truncator(truncator)
    _check_seq_length(seq_length, len(segments_batch))
    count = len(segments_batch[0])
    lengths = np.array([[len(ids) for ids in segment] for segment in segments_batch], np.int64)
    lengths = lengths.reshape(len(segments_batch), count)
    keep = _kept_lengths(lengths, seq_length - len(segments_batch) - 1, truncator)
    packed_lengths = 1 + (keep + 1).sum(axis=0)
    starts = np.zeros(count, dtype=np.int64)
    np.cumsum(packed_lengths[:-1], out=starts[1:])
    word_ids = np.empty(int(packed_lengths.sum()), dtype=np.int32)
    type_ids = np.zeros(len(word_ids), dtype=np.uint8)
    word_ids[starts] = cls_id
    begin = starts + 1  # where the current segment starts in each packed example
    for type_id, (segment, kept) in enumerate(zip(segments_batch, keep)):
        flat = np.fromiter(
            itertools.chain.from_iterable(segment), np.int32, int(lengths[type_id].sum())
        )
        source_starts = np.cumsum(lengths[type_id]) - lengths[type_id]
        kept_starts = np.cumsum(kept) - kept
        # Token j of an example's kept part moves from source_start + j to begin + j.
        step = np.arange(int(kept.sum())) - np.repeat(kept_starts, kept)
        target = np.repeat(begin, kept) + step
        word_ids[target] = flat[np.repeat(source_starts, kept) + step]
        separators = begin + kept
        word_ids[separators] = sep_id
        type_ids[target] = type_id
        type_ids[separators] = type_id
        begin = separators + 1
    return word_ids, type_ids, packed_lengths


def _kept_lengths(
    lengths: np.ndarray, budget: int, truncator: str = DEFAULT_TRUNCATOR
) -> np.ndarray:
    """Tokens each segment keeps (``[segments, batch]``) under ``truncator``'s trimming."""
    if truncator == "waterfall":
        # What the segments before each one take, then what is left of the budget for it.
        before = np.cumsum(lengths, axis=0) - lengths
        return np.clip(budget - before, 0, lengths)
    keep = lengths.copy()
    # Most examples fit whole; only the others need the allocation, one at a time.
    for row in np.flatnonzero(lengths.sum(axis=0) > budget):
        keep[:, row] = _allocate(lengths[:, row].tolist(), budget)
    return keep


def pad_packed(
    examples: Sequence[PackedExample], padding_id: int, seq_length: int | None = None
) -> dict[str, np.ndarray]:
    """Pad packed examples into ``input_word_ids``, ``input_mask`` and ``input_type_ids``.

    Each is an int64 array of shape ``[batch, L]``: ``L`` is ``seq_length`` when given, else
    the longest example of the batch (dynamic padding). Word ids are padded with
    ``padding_id``, type ids and mask with 0; the mask is 1 on every real token.

    Raises:
        ValueError: if an example is longer than ``seq_length``, or its word and type ids
            differ in length.
    """
    lengths = np.array([len(words) for words, _ in examples], dtype=np.int64)
    for index, (words, types) in enumerate(examples):
        if len(words) != len(types):
            raise ValueError(f"example {index}: {len(words)} word ids but {len(types)} type ids")
    longest = int(lengths.max()) if len(examples) else 0
    width = longest if seq_length is None else int(seq_length)
    if longest > width:
        raise ValueError(f"an example has {longest} ids, more than seq_length={width}")
    # Row-major boolean indexing fills real positions in the order of the flattened examples.
    mask = np.arange(width)[None, :] < lengths[:, None]
    word_ids = np.full((len(examples), width), padding_id, dtype=np.int64)
    type_ids = np.zeros((len(examples), width), dtype=np.int64)
    word_ids[mask] = _flatten(words for words, _ in examples)
    type_ids[mask] = _flatten(types for _, types in examples)
    return {
        "input_word_ids": word_ids,
        "input_mask": mask.astype(np.int64),
        "input_type_ids": type_ids,
    }


def _flatten(rows) -> np.ndarray:
    rows = list(rows)
    if rows and all(isinstance(row, np.ndarray) for row in rows):
        # Rows of a RaggedPacked store: joining arrays beats iterating numpy scalars.
        return np.concatenate(rows).astype(np.int64, copy=False)
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)


class BertPacker:
    """Model Garden ``BertPackInputs``: batches of segments in, padded BERT inputs out.

    Args:
        seq_length: packed length, special tokens included (the model's ``max_seq_length``
            or less).
        special_tokens: a dict with ``start_of_sequence_id``, ``end_of_segment_id`` and
            ``padding_id``, as from ``WordpieceTokenizer.special_tokens_dict``; other keys
            (``mask_id``, ``vocab_size``) are ignored.
        truncator: ``"round_robin"`` (default) or ``"waterfall"``: how segments that do not
            fit are cut (see the module docstring).
        start_of_sequence_id, end_of_segment_id, padding_id: the three ids given one by one
            instead of ``special_tokens``, as ``BertPackInputs`` also takes them: all three,
            and no dict.

    Raises:
        ConfigError: if ``seq_length`` is too small, ``truncator`` is unknown, one of the
            three ids is missing (naming the vocabulary file when the dict came from a
            tokenizer), or ids are given both ways.
    """

    def __init__(
        self,
        seq_length: int,
        special_tokens: Mapping[str, int] | None = None,
        truncator: str = DEFAULT_TRUNCATOR,
        *,
        start_of_sequence_id: int | None = None,
        end_of_segment_id: int | None = None,
        padding_id: int | None = None,
    ) -> None:
        _check_seq_length(seq_length, 1)
        self.seq_length = int(seq_length)
        self.truncator = check_truncator(truncator)
        ids = (start_of_sequence_id, end_of_segment_id, padding_id)
        given = {key: value for key, value in zip(_PACK_KEYS, ids) if value is not None}
        if special_tokens is None and len(given) == len(_PACK_KEYS):
            special_tokens = given
        elif special_tokens is None or given:
            raise ConfigError(
                "BertPacker: give either special_tokens (a dict with start_of_sequence_id, "
                "end_of_segment_id and padding_id) or all three ids as arguments, not both"
            )
        self.start_of_sequence_id, self.end_of_segment_id, self.padding_id = _special_ids(
            special_tokens, _PACK_KEYS
        )

    def pack(self, segments_batch: Sequence[Sequence[Sequence[int]]]) -> list[PackedExample]:
        """Trim and pack every example of the batch, unpadded (see :meth:`__call__`)."""
        segments_batch = _as_segments(segments_batch)
        if not segments_batch:
            raise ValueError("packing needs at least one segment")
        sizes = [len(segment) for segment in segments_batch]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"every segment must hold the same number of examples, got batch sizes {sizes}"
            )
        _check_seq_length(self.seq_length, len(segments_batch))
        cls_id, sep_id = self.start_of_sequence_id, self.end_of_segment_id
        return [
            _pack(example, self.seq_length, cls_id, sep_id, self.truncator)
            for example in zip(*segments_batch)
        ]

    def __call__(
        self, segments_batch: Sequence[Sequence[Sequence[int]]], pad_to_longest: bool = False
    ) -> dict[str, np.ndarray]:
        """Pack a batch into ``input_word_ids``, ``input_mask``, ``input_type_ids``.

        Args:
            segments_batch: one entry per segment, each a list over the batch of token-id lists
                (the orientation of ``BertPackInputs([tok1, tok2])``). A single segment may
                also be passed alone, ``packer(tok1)``, as ``BertPackInputs`` allows; it is
                recognised by its token ids, so a batch of only empty texts needs ``[tok1]``.
            pad_to_longest: pad to the batch's longest packed example instead of
                ``seq_length``.

        Returns:
            int64 arrays of shape ``[batch, seq_length]`` (or ``[batch, longest]``).

        Raises:
            ValueError: if the segments hold different numbers of examples.
            ConfigError: if ``seq_length`` cannot hold the special tokens of this many segments.
        """
        examples = self.pack(segments_batch)
        width = None if pad_to_longest else self.seq_length
        return pad_packed(examples, self.padding_id, width)

    def __repr__(self) -> str:
        return (
            f"BertPacker(seq_length={self.seq_length}, "
            f"start_of_sequence_id={self.start_of_sequence_id}, "
            f"end_of_segment_id={self.end_of_segment_id}, padding_id={self.padding_id}, "
            f"truncator={self.truncator!r})"
        )


def window_segments(
    segments: Sequence[Sequence[int]], seq_length: int, stride: int
) -> list[list[list[int]]]:
    """Split an example too long for ``seq_length`` into overlapping windows of its first segment.

    Each window holds a slice of the first segment and the other segments as they are (each
    cut to at most half of the budget, so the window keeps room). Consecutive slices start
    ``stride`` tokens apart and the last one reaches the segment's end, so every token of the
    first segment is in at least one window. An example that fits is returned as one window.
    """
    if stride <= 0:
        raise ConfigError(f"window stride must be positive, got {stride}")
    budget = seq_length - len(segments) - 1
    if sum(len(segment) for segment in segments) <= budget:
        return [[list(segment) for segment in segments]]
    others = [list(segment[: budget // 2]) for segment in segments[1:]]
    width = budget - sum(len(segment) for segment in others)
    first = list(segments[0])
    starts = list(range(0, max(len(first) - width, 0) + 1, stride))
    if starts[-1] + width < len(first):
        starts.append(len(first) - width)  # the tail is never left out
    return [[first[start : start + width], *others] for start in starts]
