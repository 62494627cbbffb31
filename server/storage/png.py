"""PNG encoding for the artifact store: every row 'Up'-filtered, deflated with run-length
matching.

Pillow picks a filter per row by trying all five, which cost most of a display image's
encoding (2.5 of 3.3 ms for a 211×211 Neuron Feature). The smooth images stored here compress
as well with the Up filter (each row minus the one above) and zlib's RLE strategy: 0.6–0.9 ms,
and files 0–15 % smaller than Pillow's at level 1 on ResNet-18's NFs.

The deflate stream comes from Intel's ISA-L (the ``isal`` package) where it installs: on
ResNet-50's NFs it is 4.2× faster than zlib's RLE at level 1 (0.13 against 0.56 ms a 214×214
image) for files 2 % larger, and its output is an ordinary zlib stream. zlib remains the
fallback (a platform without the wheel), with the same pixels either way.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:
    from isal import isal_zlib
except ImportError:  # no wheel for this platform: zlib writes the same pixels, slower
    isal_zlib = None

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels → PNG colour type: grey, RGB, RGBA
UP = 2  # the PNG row filter: each byte minus the byte above it, modulo 256


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """A uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image as PNG bytes."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or 0 in pixels.shape:
        raise ValueError(f"cannot encode a {pixels.dtype} array of shape {pixels.shape} as PNG")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in COLOUR_TYPES:
        raise ValueError(f"cannot encode {channels} channels as PNG")
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = UP
    filtered[0, 1:] = rows[0]  # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps
    data = _deflated(filtered, level)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _deflated(data: np.ndarray, level: int) -> bytes:
    """``data`` as a zlib stream: ISA-L's at ``level`` (it has levels 0–3) where installed."""
    if isal_zlib is not None:
        return isal_zlib.compress(data.data, min(level, 3))
    deflate = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    return deflate.compress(data.data) + deflate.flush()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
