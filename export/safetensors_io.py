"""Streaming safetensors: write tensors chunk by chunk in bounded memory, and read headers to validate files.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape
and byte range, then the raw bytes. Writing it directly (instead of through the safetensors package,
which wants whole tensors in memory) lets a 13.8 GB checkpoint be generated shard by shard.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.errors import CheckpointError

DTYPE_SIZES = {"BF16": 2, "F16": 2, "F32": 4, "U8": 1, "I8": 1, "I32": 4, "I64": 8}
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorPlan:
    """A tensor to be written: its name, dtype, shape, and a producer of its bytes in row order."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    chunks: Callable[[], Iterable[np.ndarray]]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_SIZES[self.dtype]


def float_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest even), returned as the raw uint16 bit patterns."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_float(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def write_safetensors(path: Path, tensors: list[TensorPlan], on_bytes: Callable[[int], None] | None = None) -> None:
    """Write tensors to path, pulling each tensor's bytes from its chunk producer."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for plan in tensors:
        header[plan.name] = {
            "dtype": plan.dtype,
            "shape": list(plan.shape),
            "data_offsets": [offset, offset + plan.nbytes],
        }
        offset += plan.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as the reference writer does
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for plan in tensors:
            written = 0
            for chunk in plan.chunks():
                data = np.ascontiguousarray(chunk).tobytes()
                handle.write(data)
                written += len(data)
                if on_bytes is not None:
                    on_bytes(len(data))
            if written != plan.nbytes:
                raise ValueError(f"{plan.name}: producer wrote {written} bytes, expected {plan.nbytes}")
        handle.flush()
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    begin: int
    end: int


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check a safetensors header against the file's size; raise CheckpointError when it is damaged."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw_len = handle.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(f"{path.name} is empty or truncated (no safetensors header)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise CheckpointError(f"{path.name} is not a valid safetensors file (header length {header_len})")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path.name}: {exc}") from exc
    data_start = 8 + header_len
    infos: dict[str, TensorInfo] = {}
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = entry["dtype"]
        shape = tuple(int(d) for d in entry["shape"])
        if dtype in DTYPE_SIZES and end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise CheckpointError(f"{path.name}: tensor {name} has {end - begin} bytes for shape {shape} {dtype}")
        infos[name] = TensorInfo(name, dtype, shape, path, data_start + begin, data_start + end)
        data_end = max(data_end, end)
    if data_start + data_end > size:
        missing = data_start + data_end - size
        raise CheckpointError(f"{path.name} is truncated: {missing} bytes of tensor data are missing")
    return infos


def read_tensor(info: TensorInfo) -> np.ndarray:
    """Memory-map one tensor as a numpy array (BF16 comes back as its uint16 bit patterns)."""
    numpy_dtype = {
        "BF16": np.uint16,
        "F16": np.float16,
        "F32": np.float32,
        "U8": np.uint8,
        "I8": np.int8,
        "I32": np.int32,
        "I64": np.int64,
    }[info.dtype]
    array = np.memmap(info.file, dtype=numpy_dtype, mode="r", offset=info.begin, shape=info.shape)
    return np.asarray(array)


def iter_rows(total_rows: int, rows_per_chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total_rows, rows_per_chunk):
        yield start, min(total_rows, start + rows_per_chunk)
