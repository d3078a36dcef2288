"""A minimal TensorBundle writer for tests: checkpoints TensorFlow's generator cannot make here
(big-endian, a newer format version, a compressed index, two encoders in one file).

The TensorFlow-written fixtures in ``tests/fixtures/tf`` prove the reader against TensorFlow;
this writer only builds variations of the same format, one data block and one shard.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from bertfit.model.tf_checkpoint import masked_crc32c, proto_classes

DTYPE_CODES = {
    np.dtype("float32"): 1,
    np.dtype("float64"): 2,
    np.dtype("int32"): 3,
    np.dtype("int64"): 9,
    np.dtype("float16"): 19,
}
TABLE_MAGIC = 0xDB4775248B80FB57


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def block(entries: list[tuple[bytes, bytes]], block_type: int = 0) -> bytes:
    """One table block (no key sharing, one restart point) with its type and checksum."""
    body = b"".join(
        varint(0) + varint(len(key)) + varint(len(value)) + key + value for key, value in entries
    )
    body += struct.pack("<II", 0, 1)
    trailer = bytes([block_type])
    return body + trailer + struct.pack("<I", masked_crc32c(body + trailer))


def write_table(path: Path, entries: list[tuple[bytes, bytes]], block_type: int = 0) -> None:
    data = block(entries, block_type)
    meta_offset = len(data)
    meta = block([])
    index_offset = meta_offset + len(meta)
    handle = varint(0) + varint(len(data) - 5)
    index = block([(entries[-1][0], handle)])
    footer = varint(meta_offset) + varint(len(meta) - 5)
    footer += varint(index_offset) + varint(len(index) - 5)
    footer = footer.ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    path.write_bytes(data + meta + index + footer)


def write_bundle(
    prefix: Path,
    tensors: dict[str, np.ndarray],
    *,
    big_endian: bool = False,
    min_consumer: int = 0,
    block_type: int = 0,
) -> Path:
    """Write ``tensors`` as checkpoint ``prefix`` (one shard); returns the prefix."""
    messages = proto_classes()
    order = ">" if big_endian else "<"
    data = bytearray()
    entries = []
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder(order)).tobytes()
        entry = messages["BundleEntryProto"](
            dtype=DTYPE_CODES[array.dtype],
            shard_id=0,
            offset=len(data),
            size=len(raw),
            crc32c=masked_crc32c(raw),
        )
        for size in array.shape:
            entry.shape.dim.add(size=size)
        entries.append((name.encode(), entry.SerializeToString()))
        data += raw
    header = messages["BundleHeaderProto"](num_shards=1, endianness=1 if big_endian else 0)
    header.version.producer = 1
    header.version.min_consumer = min_consumer
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))
    write_table(
        prefix.with_name(prefix.name + ".index"),
        [(b"", header.SerializeToString()), *entries],
        block_type,
    )
    return prefix
