"""Read TensorFlow checkpoints (the TensorBundle format) without TensorFlow.

A checkpoint ``PREFIX`` is two kinds of file (``tensorflow/core/util/tensor_bundle``):

* ``PREFIX.index``: an immutable sorted table in LevelDB's SSTable layout (TensorFlow's copy
  lives in ``tsl/lib/io``). Its entry with the empty key is a ``BundleHeaderProto``; every
  other key is a tensor name whose value is a ``BundleEntryProto``: dtype, shape, which data
  shard, offset, size and the masked CRC-32C of the tensor's bytes. Every table block ends with
  a type byte and the masked CRC-32C of the block.
* ``PREFIX.data-SSSSS-of-NNNNN``: the shards, holding raw tensor bytes (little-endian unless the
  header says otherwise); strings are stored as varint lengths, a checksum and the bytes.

A partitioned tensor (TF1 partitioned variables; TF2's ``MaxShardSizePolicy`` splits large ones
across shards) has an entry listing its slices, each stored under a key built by TensorFlow's
``EncodeTensorNameSlice``; :meth:`CheckpointReader.read` assembles them.

Every checksum the format has is verified: each table block's, and each tensor's when it is
read. A truncated or corrupt file raises :class:`CheckpointError` naming the file and tensor.
The protobuf messages are declared here from the public ``.proto`` files (only the fields this
reader needs; protobuf keeps the rest as unknown fields), so no generated code ties bertfit to
one protobuf release. Snappy-compressed index blocks (TensorFlow 1.1 and older) are refused
with a clear error. This module needs numpy, protobuf and google-crc32c, not torch.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from bertfit.errors import CheckpointError

INDEX_SUFFIX = ".index"

# The table footer: two block handles padded to 40 bytes, then the 8-byte magic number.
_FOOTER_SIZE = 48
_TABLE_MAGIC = 0xDB4775248B80FB57
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c
_NO_COMPRESSION, _SNAPPY = 0, 1

# Versions of the bundle format this reader understands (tensor_bundle.h).
_BUNDLE_VERSION = 1

# TensorFlow DataType enum values (types.proto) -> numpy dtype. bfloat16 has no numpy type:
# it is read as uint16 and widened to float32 exactly.
_DTYPES: dict[int, tuple[str, str]] = {
    1: ("float32", "f4"),
    2: ("float64", "f8"),
    3: ("int32", "i4"),
    4: ("uint8", "u1"),
    5: ("int16", "i2"),
    6: ("int8", "i1"),
    9: ("int64", "i8"),
    10: ("bool", "?"),
    14: ("bfloat16", "u2"),
    17: ("uint16", "u2"),
    19: ("float16", "f2"),
    22: ("uint32", "u4"),
    23: ("uint64", "u8"),
}
_DT_STRING = 7
_DTYPE_NAMES = {
    0: "invalid",
    7: "string",
    8: "complex64",
    18: "complex128",
    20: "resource",
    21: "variant",
    **{code: name for code, (name, _) in _DTYPES.items()},
}


# --------------------------------------------------------------------------------------------
# Protobuf messages, declared from tensor_bundle.proto, tensor_shape.proto, tensor_slice.proto,
# versions.proto and trackable_object_graph.proto (TensorFlow) and saved_metadata.proto
# (tf-keras), all Apache-2.0.
# --------------------------------------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto
_SCALAR_TYPES = {
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "fixed32": _F.TYPE_FIXED32,
    "string": _F.TYPE_STRING,
    "bool": _F.TYPE_BOOL,
}

# message name -> [(field name, number, type or message name, repeated)]. Enums (DataType,
# Endianness) are declared as int32: the same varint on the wire, and no closed-enum checks.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "TensorShapeProto.Dim": [("size", 1, "int64", False), ("name", 2, "string", False)],
    "TensorShapeProto": [
        ("dim", 2, "TensorShapeProto.Dim", True),
        ("unknown_rank", 3, "bool", False),
    ],
    # "length?" sits in the oneof has_length: unset means the whole dimension.
    "TensorSliceProto.Extent": [("start", 1, "int64", False), ("length", 2, "int64?", False)],
    "TensorSliceProto": [("extent", 1, "TensorSliceProto.Extent", True)],
    "VersionDef": [
        ("producer", 1, "int32", False),
        ("min_consumer", 2, "int32", False),
        ("bad_consumers", 3, "int32", True),
    ],
    "BundleHeaderProto": [
        ("num_shards", 1, "int32", False),
        ("endianness", 2, "int32", False),
        ("version", 3, "VersionDef", False),
    ],
    "BundleEntryProto": [
        ("dtype", 1, "int32", False),
        ("shape", 2, "TensorShapeProto", False),
        ("shard_id", 3, "int32", False),
        ("offset", 4, "int64", False),
        ("size", 5, "int64", False),
        ("crc32c", 6, "fixed32", False),
        ("slices", 7, "TensorSliceProto", True),
    ],
    "TrackableObjectGraph.TrackableObject.ObjectReference": [
        ("node_id", 1, "int32", False),
        ("local_name", 2, "string", False),
    ],
    "TrackableObjectGraph.TrackableObject.SerializedTensor": [
        ("name", 1, "string", False),
        ("full_name", 2, "string", False),
        ("checkpoint_key", 3, "string", False),
    ],
    "TrackableObjectGraph.TrackableObject.SlotVariableReference": [
        ("original_variable_node_id", 1, "int32", False),
        ("slot_name", 2, "string", False),
        ("slot_variable_node_id", 3, "int32", False),
    ],
    "TrackableObjectGraph.TrackableObject": [
        ("children", 1, "TrackableObjectGraph.TrackableObject.ObjectReference", True),
        ("attributes", 2, "TrackableObjectGraph.TrackableObject.SerializedTensor", True),
        ("slot_variables", 3, "TrackableObjectGraph.TrackableObject.SlotVariableReference", True),
    ],
    "TrackableObjectGraph": [("nodes", 1, "TrackableObjectGraph.TrackableObject", True)],
    # keras_metadata.pb of a Keras SavedModel (tf_keras/protobuf/saved_metadata.proto): each
    # layer's config as JSON.
    "SavedObject": [
        ("node_id", 2, "int32", False),
        ("node_path", 3, "string", False),
        ("identifier", 4, "string", False),
        ("metadata", 5, "string", False),
    ],
    "SavedMetadata": [("nodes", 1, "SavedObject", True)],
}
_PACKAGE = "bertfit_tensorflow"  # not "tensorflow": never clash with TensorFlow's own protos


@functools.cache
def proto_classes() -> dict[str, Any]:
    """Message classes by name (``BundleEntryProto``, ``TrackableObjectGraph``, ...)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="bertfit_tensor_bundle.proto", package=_PACKAGE, syntax="proto3"
    )
    declared: dict[str, descriptor_pb2.DescriptorProto] = {}
    for full_name in sorted(_MESSAGES, key=lambda name: name.count(".")):  # parents first
        parent, _, name = full_name.rpartition(".")
        container = declared[parent].nested_type if parent else file.message_type
        declared[full_name] = container.add(name=name)
    for full_name, fields in _MESSAGES.items():
        for name, number, kind, repeated in fields:
            field = declared[full_name].field.add(
                name=name,
                number=number,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if kind.endswith("?"):
                field.oneof_index = len(declared[full_name].oneof_decl)
                declared[full_name].oneof_decl.add(name=f"has_{name}")
                kind = kind[:-1]
            if kind in _SCALAR_TYPES:
                field.type = _SCALAR_TYPES[kind]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in _MESSAGES
    }


def parse_message(kind: str, data: bytes, where: str) -> Any:
    """Parse serialized protobuf ``data`` as message ``kind``; errors name ``where``."""
    message = proto_classes()[kind]()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise CheckpointError(f"{where}: corrupt {kind} ({error})") from None
    return message


# --------------------------------------------------------------------------------------------
# Checksums and varints
# --------------------------------------------------------------------------------------------

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """CRC-32C of ``data``, masked as TensorFlow and LevelDB store it."""
    return _mask(google_crc32c.value(data))


def _mask(crc: int) -> int:
    # Rotated and offset, so that a checksum stored inside checksummed data stays useful.
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(data: bytes | memoryview, pos: int, where: str) -> tuple[int, int]:
    """Decode a little-endian base-128 varint at ``pos``; returns (value, next position)."""
    result = shift = 0
    while pos < len(data) and shift <= 63:
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise CheckpointError(f"{where}: corrupt table (bad varint)")


# --------------------------------------------------------------------------------------------
# The index table (LevelDB SSTable layout)
# --------------------------------------------------------------------------------------------


def read_table(path: str | Path) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` entries of an SSTable file, in key order, every block checksummed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) < _FOOTER_SIZE:
        raise CheckpointError(
            f"{path}: truncated ({len(data)} bytes, shorter than the table footer)"
        )
    footer = data[-_FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
    if magic != _TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: not a TensorFlow checkpoint index (bad magic number; the file is "
            "truncated, corrupt or of another kind)"
        )
    where = str(path)
    _, pos = _block_handle(footer, 0, where)  # the metaindex block: empty in bundles
    index_offset, index_size = _block_handle(footer, pos, where)[0]
    entries = []
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, where), where):
        (offset, size), _ = _block_handle(handle, 0, where)
        entries.extend(_block_entries(_read_block(data, offset, size, where), where))
    keys = [key for key, _ in entries]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise CheckpointError(f"{where}: corrupt table (keys out of order)")
    return entries


def _block_handle(data: bytes, pos: int, where: str) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(data, pos, where)
    size, pos = _varint(data, pos, where)
    return (offset, size), pos


def _read_block(data: bytes, offset: int, size: int, where: str) -> bytes:
    end = offset + size + _BLOCK_TRAILER_SIZE
    if end > len(data) - _FOOTER_SIZE:
        raise CheckpointError(f"{where}: corrupt table (a block runs past the end of the file)")
    block = data[offset : offset + size + 1]  # contents and the compression type byte
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if masked_crc32c(block) != stored:
        raise CheckpointError(f"{where}: checksum mismatch in the table block at byte {offset}")
    if block[-1] == _SNAPPY:
        raise CheckpointError(
            f"{where}: the index is snappy-compressed (written by TensorFlow 1.1 or older); "
            "re-save it with a newer TensorFlow to read it without TensorFlow"
        )
    if block[-1] != _NO_COMPRESSION:
        raise CheckpointError(f"{where}: corrupt table (unknown block type {block[-1]})")
    return block[:-1]


def _block_entries(block: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
    """The entries of one block: keys are prefix-compressed against the previous key."""
    if len(block) < 4:
        raise CheckpointError(f"{where}: corrupt table (block too short)")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{where}: corrupt table (bad restart count)")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        value_size, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise CheckpointError(f"{where}: corrupt table (bad entry)")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_size]
        pos += value_size


# --------------------------------------------------------------------------------------------
# The bundle
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor of a checkpoint lives and what it is.

    ``dtype`` is TensorFlow's name (``float32``, ``bfloat16``, ``string``, ...), ``shape`` the
    full shape, ``shard``/``offset``/``size`` its bytes and ``crc32c`` their masked checksum.
    A partitioned tensor has no bytes of its own: ``slices`` lists each part's
    ``(start, length)`` per dimension (length -1: the whole dimension), and each part is stored
    as an entry of its own.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    slices: tuple[tuple[tuple[int, int], ...], ...] = ()


class CheckpointReader:
    """Random access to the tensors of one TensorFlow checkpoint ``PREFIX``.

    ``prefix`` is the path without ``.index`` (``.../bert_model.ckpt``); the ``.index`` file
    itself is accepted too. Opening reads and checks the index (every block checksum, the
    header's format version and shard count, each data file's presence and size); tensors are
    read on demand with :meth:`read`, which verifies each tensor's checksum.
    """

    def __init__(self, prefix: str | Path) -> None:
        prefix = Path(prefix)
        if prefix.name.endswith(INDEX_SUFFIX):
            prefix = prefix.with_name(prefix.name[: -len(INDEX_SUFFIX)])
        self.prefix = prefix
        self.index_path = prefix.with_name(prefix.name + INDEX_SUFFIX)
        if not self.index_path.is_file():
            raise CheckpointError(f"{self.index_path}: no such checkpoint index")
        table = read_table(self.index_path)
        if not table or table[0][0] != b"":
            raise CheckpointError(f"{self.index_path}: corrupt index (no bundle header)")
        header = parse_message("BundleHeaderProto", table[0][1], f"{self.index_path} header")
        self._check_header(header)
        self.byte_order = ">" if header.endianness == 1 else "<"
        self.num_shards = header.num_shards
        # Keys starting with a zero byte hold the parts of partitioned tensors (TensorFlow's
        # EncodeTensorNameSlice); they are reached through the whole tensor's entry.
        self._table = dict(table[1:])
        self.entries: dict[str, TensorEntry] = {}
        for key, value in table[1:]:
            if not key.startswith(b"\x00"):
                name = key.decode("utf-8", errors="replace")
                self.entries[name] = self._parse_entry(name, value)
        self.data_paths = [self._data_path(shard) for shard in range(self.num_shards)]
        self._check_shards()

    def __repr__(self) -> str:
        return f"CheckpointReader({str(self.prefix)!r}, {len(self.entries)} tensors)"

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def keys(self) -> list[str]:
        """Tensor names, in the checkpoint's (sorted) order."""
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name``."""
        return self._get(name).shape

    def dtype(self, name: str) -> str:
        """TensorFlow's name of the dtype of tensor ``name``."""
        return self._get(name).dtype

    def read(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a numpy array (bfloat16 widened to float32, which is exact).

        Partitioned tensors are assembled from their parts. Raises :class:`CheckpointError`
        naming the file and tensor when bytes are missing, a checksum does not match, or the
        dtype is not numeric.
        """
        entry = self._get(name)
        if entry.dtype == "string":
            raise CheckpointError(f"{self.prefix}: {name} holds strings; use read_strings()")
        if entry.dtype not in _NUMPY_CODES:
            raise CheckpointError(f"{self.prefix}: {name} has unsupported dtype {entry.dtype}")
        array = self._assemble(entry) if entry.slices else self._decode(entry)
        if entry.dtype == "bfloat16":
            # bfloat16 is the top half of a float32: shift it into place.
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def read_strings(self, name: str) -> list[bytes]:
        """A string tensor's elements (row-major), checksums verified."""
        entry = self._get(name)
        if entry.dtype != "string" or entry.slices:
            raise CheckpointError(f"{self.prefix}: {name} is not an unpartitioned string tensor")
        raw = self._read_bytes(entry, checksum=False)
        where = f"{self._data_path(entry.shard)}: {name}"
        # [varint64 lengths][masked crc32c of the lengths][the strings]; the entry's checksum
        # covers each length as a fixed-width integer, the length checksum, then the strings.
        lengths, pos = [], 0
        for _ in range(_volume(entry.shape)):
            length, pos = _varint(raw, pos, where)
            lengths.append(length)
        fixed = b"".join(struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n) for n in lengths)
        stored = raw[pos : pos + 4]
        body = raw[pos + 4 :]
        if len(stored) != 4 or len(body) != sum(lengths):
            raise CheckpointError(f"{where}: corrupt string tensor (lengths do not add up)")
        crc = google_crc32c.extend(google_crc32c.value(fixed), stored + body)
        if struct.unpack("<I", stored)[0] != masked_crc32c(fixed) or _mask(crc) != entry.crc32c:
            raise CheckpointError(f"{where}: checksum mismatch (the file is corrupt)")
        strings, pos = [], 0
        for length in lengths:
            strings.append(body[pos : pos + length])
            pos += length
        return strings

    def verify(self) -> None:
        """Read every tensor once, checking every checksum; raises on the first problem."""
        for name, entry in self.entries.items():
            if entry.slices:
                for part in self._parts(entry):
                    self._read_bytes(part)
            elif entry.dtype == "string":
                self.read_strings(name)
            elif entry.dtype in _NUMPY_CODES:
                self._read_bytes(entry)
            else:
                raise CheckpointError(f"{self.prefix}: {name} has unsupported dtype {entry.dtype}")

    # -- internals ----------------------------------------------------------------------------

    def _check_header(self, header: Any) -> None:
        where = f"{self.index_path}"
        version = header.version
        if version.min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in version.bad_consumers:
            raise CheckpointError(
                f"{where}: written in a newer checkpoint format (version {version.producer}, "
                f"needs a reader of version {version.min_consumer} or newer)"
            )
        if header.endianness not in (0, 1):
            raise CheckpointError(f"{where}: corrupt header (endianness {header.endianness})")
        if header.num_shards < 1:
            raise CheckpointError(f"{where}: corrupt header ({header.num_shards} data shards)")

    def _parse_entry(self, name: str, value: bytes) -> TensorEntry:
        proto = parse_message("BundleEntryProto", value, f"{self.index_path}: entry {name!r}")
        if proto.shape.unknown_rank or any(dim.size < 0 for dim in proto.shape.dim):
            raise CheckpointError(f"{self.index_path}: {name} has no fully known shape")
        shape = tuple(dim.size for dim in proto.shape.dim)
        slices = tuple(
            tuple(
                (extent.start, extent.length if extent.HasField("length") else -1)
                for extent in piece.extent
            )
            for piece in proto.slices
        )
        if any(len(piece) != len(shape) for piece in slices):
            raise CheckpointError(f"{self.index_path}: {name} has a slice of the wrong rank")
        if not slices and not 0 <= proto.shard_id < self.num_shards:
            raise CheckpointError(
                f"{self.index_path}: {name} is in shard {proto.shard_id}, "
                f"but the checkpoint has {self.num_shards}"
            )
        return TensorEntry(
            name=name,
            dtype=_DTYPE_NAMES.get(proto.dtype, f"dtype {proto.dtype}"),
            shape=shape,
            shard=proto.shard_id,
            offset=proto.offset,
            size=proto.size,
            crc32c=proto.crc32c,
            slices=slices,
        )

    def _parts(self, entry: TensorEntry) -> list[TensorEntry]:
        """The entries holding the parts of partitioned tensor ``entry``, one per slice."""
        parts = []
        for piece in entry.slices:
            key = encode_slice_key(entry.name, piece)
            if key not in self._table:
                raise CheckpointError(
                    f"{self.index_path}: {entry.name} lacks its slice {list(piece)}"
                )
            part = self._parse_entry(f"{entry.name}{list(piece)}", self._table[key])
            if part.dtype != entry.dtype or part.shape != _slice_shape(entry.shape, piece):
                raise CheckpointError(f"{self.index_path}: {part.name} does not fit its slice")
            parts.append(part)
        return parts

    def _assemble(self, entry: TensorEntry) -> np.ndarray:
        parts = self._parts(entry)
        dtype = np.dtype(_NUMPY_CODES[entry.dtype])
        array = np.empty(entry.shape, dtype=dtype)
        covered = 0
        for piece, part in zip(entry.slices, parts):
            index = tuple(
                slice(start, None if length < 0 else start + length) for start, length in piece
            )
            array[index] = self._decode(part)
            covered += _volume(part.shape)
        if covered != _volume(entry.shape):
            raise CheckpointError(
                f"{self.index_path}: the slices of {entry.name} do not cover the tensor"
            )
        return array

    def _decode(self, entry: TensorEntry) -> np.ndarray:
        """A numeric tensor's bytes as a native-order array of its own memory."""
        dtype = np.dtype(self.byte_order + _NUMPY_CODES[entry.dtype])
        expected = _volume(entry.shape) * dtype.itemsize
        if entry.size != expected:
            raise CheckpointError(
                f"{self.index_path}: {entry.name} has {entry.size} bytes, but shape "
                f"{list(entry.shape)} of {entry.dtype} needs {expected}"
            )
        raw = self._read_bytes(entry)
        array = np.frombuffer(raw, dtype=dtype).reshape(entry.shape)
        return array.astype(dtype.newbyteorder("="))  # a writable copy, in native order

    def _data_path(self, shard: int) -> Path:
        return self.prefix.with_name(
            f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}"
        )

    def _check_shards(self) -> None:
        """Each shard exists and is long enough for every tensor it is said to hold."""
        needed = [0] * self.num_shards
        for key, value in self._table.items():
            entry = parse_message("BundleEntryProto", value, f"{self.index_path}: {key!r}")
            if not entry.slices and 0 <= entry.shard_id < self.num_shards:
                end = entry.offset + entry.size
                needed[entry.shard_id] = max(needed[entry.shard_id], end)
        for shard, path in enumerate(self.data_paths):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise CheckpointError(
                    f"{path}: missing data shard {shard + 1} of {self.num_shards}"
                ) from None
            if size < needed[shard]:
                raise CheckpointError(
                    f"{path}: truncated ({size} bytes; its tensors need {needed[shard]})"
                )

    def _get(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise CheckpointError(f"{self.prefix}: no tensor named {name!r}") from None

    def _read_bytes(self, entry: TensorEntry, checksum: bool = True) -> bytes:
        path = self._data_path(entry.shard)
        try:
            with path.open("rb") as handle:
                handle.seek(entry.offset)
                raw = handle.read(entry.size)
        except OSError as error:
            raise CheckpointError(f"{path}: cannot read {entry.name} ({error})") from None
        if len(raw) != entry.size:
            raise CheckpointError(
                f"{path}: truncated; {entry.name} needs bytes {entry.offset}.."
                f"{entry.offset + entry.size} but the file ends at {entry.offset + len(raw)}"
            )
        if checksum and masked_crc32c(raw) != entry.crc32c:
            raise CheckpointError(
                f"{path}: checksum mismatch in {entry.name} (the file is corrupt)"
            )
        return raw


_NUMPY_CODES = {name: code for name, code in _DTYPES.values()}


def _volume(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _slice_shape(shape: tuple[int, ...], piece: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    return tuple(size if length < 0 else length for size, (_, length) in zip(shape, piece))


# --------------------------------------------------------------------------------------------
# Keys of partitioned tensors' parts: TensorFlow's EncodeTensorNameSlice, built from its
# OrderedCode (tensorflow/core/lib/strings/ordered_code.cc).
# --------------------------------------------------------------------------------------------

# Header bits of the first two bytes of a signed number's encoding, by encoding length.
_SIGNED_HEADER = [(0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0), (0xFC, 0),
                  (0xFE, 0), (0xFF, 0), (0xFF, 0x80), (0xFF, 0xC0)]  # fmt: skip


def encode_slice_key(name: str, piece: tuple[tuple[int, int], ...]) -> bytes:
    """The table key under which TensorFlow stores one slice of partitioned tensor ``name``."""
    key = _ordered_unsigned(0) + _ordered_string(name.encode("utf-8"))
    key += _ordered_unsigned(len(piece))
    for start, length in piece:
        key += _ordered_signed(start) + _ordered_signed(length)
    return key


def _ordered_unsigned(value: int) -> bytes:
    """A length byte, then the value big-endian without leading zero bytes."""
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([len(body)]) + body


def _ordered_string(value: bytes) -> bytes:
    """The bytes with 0x00 and 0xff escaped (in one pass), then the separator 0x00 0x01."""
    escaped = re.sub(rb"[\x00\xff]", lambda m: _ESCAPES[m[0]], value)
    return escaped + b"\x00\x01"


_ESCAPES = {b"\x00": b"\x00\xff", b"\xff": b"\xff\x00"}


def _ordered_signed(value: int) -> bytes:
    """Sign bit, unary length, then the two's-complement value big-endian."""
    magnitude = ~value if value < 0 else value
    if magnitude < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = magnitude.bit_length() // 7 + 1  # kBitsToLength: 7 bits of payload a byte
    buffer = bytearray((value & ((1 << 80) - 1)).to_bytes(10, "big")[10 - length :])
    buffer[0] ^= _SIGNED_HEADER[length][0]
    buffer[1] ^= _SIGNED_HEADER[length][1]
    return bytes(buffer)


# --------------------------------------------------------------------------------------------
# Finding checkpoints
# --------------------------------------------------------------------------------------------


def is_checkpoint_prefix(path: str | Path) -> bool:
    """Whether ``path`` names a checkpoint: ``PREFIX`` with ``PREFIX.index`` beside it."""
    path = Path(path)
    if path.name.endswith(INDEX_SUFFIX) and path.is_file():
        return True
    return path.with_name(path.name + INDEX_SUFFIX).is_file()


def checkpoint_prefixes(directory: str | Path) -> list[Path]:
    """The checkpoint prefixes in ``directory`` (one per ``*.index`` file), sorted."""
    directory = Path(directory)
    return sorted(p.with_name(p.name[: -len(INDEX_SUFFIX)]) for p in directory.glob("*.index"))


def latest_tf_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint prefix a directory holds, or ``None`` when it holds none.

    The ``checkpoint`` state file that ``CheckpointManager`` and ``Saver`` keep beside their
    checkpoints names the latest (``model_checkpoint_path: "ckpt-3"``); without one, a directory
    with a single ``*.index`` (Google's ``bert_model.ckpt``) or a SavedModel's
    ``variables/variables`` gives that. Several checkpoints and no state file raise
    :class:`CheckpointError` listing them, since guessing could load the wrong one.
    """
    directory = Path(directory)
    state = directory / "checkpoint"
    if state.is_file():
        match = re.search(
            r'^model_checkpoint_path:\s*"([^"]*)"',
            state.read_text(encoding="utf-8", errors="replace"),
            re.M,
        )
        if match:
            prefix = Path(match.group(1))
            prefix = prefix if prefix.is_absolute() else directory / prefix
            if is_checkpoint_prefix(prefix):
                return prefix
            # A state file copied from another machine names absolute paths: try the name.
            if is_checkpoint_prefix(directory / prefix.name):
                return directory / prefix.name
    prefixes = checkpoint_prefixes(directory)
    if len(prefixes) > 1:
        names = ", ".join(p.name for p in prefixes)
        raise CheckpointError(
            f"{directory}: holds several checkpoints ({names}); name one as DIR/PREFIX"
        )
    if prefixes:
        return prefixes[0]
    saved_model = directory / "variables" / "variables"
    return saved_model if is_checkpoint_prefix(saved_model) else None
