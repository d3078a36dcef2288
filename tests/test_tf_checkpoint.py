"""The TensorBundle reader against checkpoints TensorFlow wrote (tests/fixtures/tf, made by
tools/make_tf_fixtures.py), and its errors on truncated, corrupt and unusual files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tf_bundle import write_bundle

from bertfit.errors import CheckpointError
from bertfit.model.tf_checkpoint import (
    CheckpointReader,
    encode_slice_key,
    is_checkpoint_prefix,
    latest_tf_checkpoint,
    masked_crc32c,
    read_table,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
EXPECTED = np.load(FIXTURES / "outputs.npz", allow_pickle=False)
DIGESTS = json.loads((FIXTURES / "tensors.json").read_text(encoding="utf-8"))


@pytest.fixture
def tf1_copy(tmp_path) -> Path:
    """A private copy of the TF1 fixture directory, to damage."""
    return Path(shutil.copytree(FIXTURES / "tf1", tmp_path / "tf1"))


# ---- what TensorFlow wrote, read back exactly -------------------------------------------------


@pytest.mark.parametrize("prefix", sorted(DIGESTS))
def test_every_tensor_matches_tensorflows_own_reading(prefix):
    reader = CheckpointReader(FIXTURES / prefix)
    for name, expected in DIGESTS[prefix].items():
        array = reader.read(name)
        assert reader.dtype(name) == expected["dtype"].replace("half", "float16"), name
        assert list(array.shape) == expected["shape"] == list(reader.shape(name)), name
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        assert digest == expected["sha256"], name


def test_every_dtype_and_rank():
    reader = CheckpointReader(FIXTURES / "dtypes" / "model.ckpt")
    assert reader.num_shards == 2
    for name in reader:
        if name == "strings":
            continue
        expected = EXPECTED["dtypes_" + name.replace("/", "_")]
        array = reader.read(name)
        np.testing.assert_array_equal(array, expected, err_msg=name)
        assert array.shape == expected.shape, name
    assert reader.read("rank0/float32").shape == ()
    assert reader.read("rank4/float32").ndim == 4
    assert reader.read("float16").dtype == np.float16
    # bfloat16 is widened to float32 exactly: the values TensorFlow itself widens to.
    assert reader.dtype("bfloat16") == "bfloat16" and reader.read("bfloat16").dtype == np.float32
    assert reader.read("bfloat16").tobytes() == EXPECTED["dtypes_bfloat16"].tobytes()
    strings = [s.hex() for s in reader.read_strings("strings")]
    assert strings == list(EXPECTED["dtypes_strings_hex"])


def test_multi_shard_checkpoints_read_from_every_shard():
    for prefix in ("tf1/bert_model.ckpt", "tf2/bert_model.ckpt", "dtypes/model.ckpt"):
        reader = CheckpointReader(FIXTURES / prefix)
        assert reader.num_shards == 2, prefix
        shards = {e.shard for e in reader.entries.values() if not e.slices}
        assert shards == {0, 1}, prefix
        reader.verify()


def test_partitioned_tensor_is_assembled_from_its_slices():
    # MaxShardSizePolicy split one tensor of the TF2 fixture across the two shards.
    reader = CheckpointReader(FIXTURES / "tf2" / "bert_model.ckpt")
    sliced = [e for e in reader.entries.values() if e.slices]
    assert sliced, "the fixture should hold a partitioned tensor"
    for entry in sliced:
        expected = DIGESTS["tf2/bert_model.ckpt"][entry.name]
        digest = hashlib.sha256(reader.read(entry.name).tobytes()).hexdigest()
        assert digest == expected["sha256"]
    # Slice keys are internal: they are not listed as tensors.
    assert all(not name.startswith("\0") for name in reader)


def test_slice_keys_follow_tensorflows_ordered_code():
    reader = CheckpointReader(FIXTURES / "tf2" / "bert_model.ckpt")
    entry = next(e for e in reader.entries.values() if e.slices)
    for piece in entry.slices:
        assert encode_slice_key(entry.name, piece) in reader._table
    # The worked examples of ordered_code.cc: 0x424242 -> f0 42 42 42, -0x800 -> 38 00.
    key = encode_slice_key("t", ((0x424242, -0x800),))
    assert key == b"\x00t\x00\x01\x01\x01" + bytes.fromhex("f0424242") + bytes.fromhex("3800")
    assert encode_slice_key("a\x00b", ((0, -1),))[:7] == b"\x00a\x00\xffb\x00\x01"


def test_checksums_follow_tensorflows_masking():
    # crc32c("123456789") is 0xe3069283; TensorFlow stores it masked.
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---- damaged files ----------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_tensor_is_a_checksum_error(tf1_copy):
    reader = CheckpointReader(tf1_copy / "bert_model.ckpt")
    name = "bert/embeddings/word_embeddings"
    entry = reader.entries[name]
    _flip(reader.data_paths[entry.shard], entry.offset + 5)
    reader.read("bert/embeddings/token_type_embeddings")  # others still read
    with pytest.raises(CheckpointError, match="checksum mismatch in bert/embeddings/word") as error:
        reader.read(name)
    assert f"data-0000{entry.shard}-of-00002" in str(error.value)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        CheckpointReader(tf1_copy / "bert_model.ckpt").verify()


def test_flipped_byte_in_the_index_is_a_checksum_error(tf1_copy):
    _flip(tf1_copy / "bert_model.ckpt.index", 40)
    with pytest.raises(CheckpointError, match=r"bert_model\.ckpt\.index: checksum mismatch"):
        CheckpointReader(tf1_copy / "bert_model.ckpt")


def test_flipped_byte_in_a_string_tensor_is_a_checksum_error(tmp_path):
    directory = Path(shutil.copytree(FIXTURES / "tf2", tmp_path / "tf2"))
    reader = CheckpointReader(directory / "bert_model.ckpt")
    entry = reader.entries["_CHECKPOINTABLE_OBJECT_GRAPH"]
    _flip(reader.data_paths[entry.shard], entry.offset + entry.size - 3)
    with pytest.raises(CheckpointError, match="_CHECKPOINTABLE_OBJECT_GRAPH: checksum mismatch"):
        reader.read_strings("_CHECKPOINTABLE_OBJECT_GRAPH")


def test_truncated_data_shard_is_named(tf1_copy):
    shard = tf1_copy / "bert_model.ckpt.data-00000-of-00002"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"data-00000-of-00002: truncated \(1000 bytes"):
        CheckpointReader(tf1_copy / "bert_model.ckpt")


def test_shard_truncated_after_opening_is_named(tf1_copy):
    reader = CheckpointReader(tf1_copy / "bert_model.ckpt")
    entry = reader.entries["bert/embeddings/word_embeddings"]
    path = reader.data_paths[entry.shard]
    path.write_bytes(path.read_bytes()[: entry.offset + 10])
    with pytest.raises(CheckpointError, match="truncated; bert/embeddings/word_embeddings needs"):
        reader.read("bert/embeddings/word_embeddings")


def test_truncated_or_foreign_index_is_named(tf1_copy):
    index = tf1_copy / "bert_model.ckpt.index"
    data = index.read_bytes()
    index.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        CheckpointReader(tf1_copy / "bert_model.ckpt")
    index.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        CheckpointReader(tf1_copy / "bert_model.ckpt")
    index.write_text("{}" * 40, encoding="utf-8")
    with pytest.raises(CheckpointError, match="bad magic number"):
        read_table(index)


def test_missing_shard_is_named(tf1_copy):
    (tf1_copy / "bert_model.ckpt.data-00001-of-00002").unlink()
    with pytest.raises(CheckpointError, match="missing data shard 2 of 2"):
        CheckpointReader(tf1_copy / "bert_model.ckpt")
    with pytest.raises(CheckpointError, match="no such checkpoint index"):
        CheckpointReader(tf1_copy / "nothing")


def test_unknown_tensor_name_is_named():
    reader = CheckpointReader(FIXTURES / "tf1" / "bert_model.ckpt.index")  # .index works too
    assert reader.keys() == sorted(reader.keys()) and reader.keys()[-1] == "global_step"
    with pytest.raises(CheckpointError, match="no tensor named 'bert/nothing'"):
        reader.read("bert/nothing")
    with pytest.raises(CheckpointError, match="holds strings"):
        CheckpointReader(FIXTURES / "dtypes" / "model.ckpt").read("strings")


# ---- format variations TensorFlow's generator does not produce here -------------------------


def test_big_endian_bundles_are_byte_swapped(tmp_path):
    values = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int64)}
    reader = CheckpointReader(write_bundle(tmp_path / "be", values, big_endian=True))
    assert reader.byte_order == ">"
    for name, value in values.items():
        np.testing.assert_array_equal(reader.read(name), value)
        assert reader.read(name).dtype == value.dtype  # native order again


def test_newer_format_versions_are_refused(tmp_path):
    prefix = write_bundle(tmp_path / "new", {"a": np.zeros(2, np.float32)}, min_consumer=2)
    with pytest.raises(CheckpointError, match="newer checkpoint format"):
        CheckpointReader(prefix)


def test_compressed_index_is_refused_clearly(tmp_path):
    prefix = write_bundle(tmp_path / "old", {"a": np.zeros(2, np.float32)}, block_type=1)
    with pytest.raises(CheckpointError, match="snappy-compressed"):
        CheckpointReader(prefix)


# ---- finding checkpoints ----------------------------------------------------------------------


def test_latest_checkpoint_finds_the_one_to_read(tmp_path):
    assert latest_tf_checkpoint(FIXTURES / "tf1") == FIXTURES / "tf1" / "bert_model.ckpt"
    assert latest_tf_checkpoint(FIXTURES / "hub") == FIXTURES / "hub" / "variables" / "variables"
    assert latest_tf_checkpoint(tmp_path) is None
    for step in (1, 2):
        write_bundle(tmp_path / f"ckpt-{step}", {"a": np.zeros(1, np.float32)})
    with pytest.raises(CheckpointError, match="several checkpoints"):
        latest_tf_checkpoint(tmp_path)
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/elsewhere/ckpt-1"\nall_model_checkpoint_paths: "ckpt-2"\n'
    )
    assert latest_tf_checkpoint(tmp_path) == tmp_path / "ckpt-1"
    assert is_checkpoint_prefix(tmp_path / "ckpt-2")
    assert is_checkpoint_prefix(tmp_path / "ckpt-2.index")
    assert not is_checkpoint_prefix(tmp_path / "ckpt-3")


def test_reading_checkpoints_needs_no_torch():
    code = (
        "import sys\n"
        "from bertfit.model.sources import describe_source\n"
        "from bertfit.model.tf_checkpoint import CheckpointReader\n"
        "from bertfit.model.tf_names import map_checkpoint\n"
        f"source = describe_source({str(FIXTURES / 'hub')!r})\n"
        "mapped = map_checkpoint(CheckpointReader(source.weights))\n"
        "assert len(mapped.tensors) == 39 and source.config.hidden_size == 32\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
