"""Read and write the safetensors format with torch alone.

safetensors is an 8-byte little-endian header length, a JSON header mapping each tensor name to
its dtype, shape and byte range, then the raw little-endian bytes. Nothing in it can execute code,
which is why it is our preferred weights format. Implementing the dozen lines here keeps
``analysis/`` free of dependencies beyond torch, numpy and pillow.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a valid safetensors file."""


def save_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (and optional string ``metadata``) to ``path`` atomically."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(safetensors_bytes(tensors, metadata))
    partial.replace(path)


def safetensors_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> bytes:
    """``tensors`` (and optional string ``metadata``) in the safetensors format, in memory."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs: list[bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        data = tensor.detach().cpu().contiguous()
        raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
        header[name] = {
            "dtype": _NAMES[data.dtype],
            "shape": list(data.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return b"".join([struct.pack("<Q", len(encoded)), encoded, *blobs])


def looks_like_safetensors(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does (an 8-byte header length, then the
    JSON header): the Hugging Face cache keeps files as blobs named by hash, without suffix."""
    with Path(path).open("rb") as file:
        start = file.read(9)
    if len(start) < 9 or start[8:9] != b"{":
        return False
    return struct.unpack("<Q", start[:8])[0] < Path(path).stat().st_size


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` read from a safetensors file."""
    return parse_safetensors(Path(path).read_bytes(), str(path))


def parse_safetensors(
    raw: bytes, path: str = "<bytes>"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` from safetensors bytes; ``path`` names them in errors."""
    if len(raw) < 8:
        raise SafetensorsError(f"{path}: too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if header_len > min(_MAX_HEADER_BYTES, len(raw) - 8):
        raise SafetensorsError(f"{path}: not a safetensors file (bad header length)")
    try:
        header = json.loads(raw[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"{path}: not a safetensors file ({error})") from None
    body = memoryview(raw)[8 + header_len :]
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        try:
            dtype = _DTYPES[entry["dtype"]]
            start, end = entry["data_offsets"]
            shape = entry["shape"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: malformed entry for tensor {name!r}") from None
        if not 0 <= start <= end <= len(body):
            raise SafetensorsError(f"{path}: tensor {name!r} lies outside the file")
        if end == start:  # torch.frombuffer refuses an empty buffer
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=torch.uint8)
        tensors[name] = flat.view(dtype).reshape(shape)
    return tensors, metadata
