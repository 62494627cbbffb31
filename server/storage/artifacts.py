"""Content-addressed artifact files: the name of a PNG or NPY is the SHA-256 of its bytes.

The same bytes are stored once, a key never changes meaning (so the web can cache it forever),
and a write is atomic (temporary file, then rename), so a crash never leaves half a file under a
valid key. A writer killed mid-write leaves its temporary file, named after its machine and
process: :meth:`ArtifactStore.sweep_partials` removes those whose writer is gone, at every start
of the dashboard and of a worker.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
from PIL import Image

from server.storage.png import encode_png

KEY = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,16}")
PARTIAL = ".partial-"
# A temporary file of another machine (which this one cannot ask about) is left this long.
FOREIGN_PARTIAL_AGE = 24 * 3600.0
PACK_SUFFIX = "pack"


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._folders: set[str] = set()  # fan-out folders known to exist

    def path(self, key: str) -> Path:
        """Where ``key`` (``<sha256>.<ext>``) lives: fanned out by its first two hex digits."""
        if not KEY.fullmatch(key):
            raise ValueError(f"not an artifact key: {key[:80]!r}")
        return self.root / key[:2] / key

    def put_bytes(self, data: bytes, suffix: str) -> str:
        return self.put_parts([data], suffix)

    def put_parts(
        self, parts: list[bytes | memoryview], suffix: str, digest: str | None = None
    ) -> str:
        """Store the concatenation of ``parts`` without joining them in memory first, under
        the SHA-256 of its bytes (or ``digest``, a hash that fixes them as surely).

        This does little besides: its fan-out folders are made once, and the temporary file is
        named here (``tempfile`` draws random names and retries)."""
        if digest is None:
            hashed = hashlib.sha256()
            for part in parts:
                hashed.update(part)
            digest = hashed.hexdigest()
        key = f"{digest}.{suffix}"
        target = self.path(key)
        if target.exists():
            return key
        if key[:2] not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(key[:2])
        # this machine, process and serial: no other writer uses the name (one left by a dead
        # process that had this pid is stale, and truncated)
        temporary = target.parent / f"{PARTIAL}{_machine()}-{os.getpid()}-{next(_SERIAL)}"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(handle, "wb") as file:
                for part in parts:
                    file.write(part)
            temporary.replace(target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return key

    def put_png(self, pixels: np.ndarray) -> str:
        """Store a uint8 image as PNG (:mod:`server.png`: a layer's NFs are thousands of them,
        and Pillow's encoder spent most of the NF stage's encoding time choosing filters)."""
        return self.put_bytes(encode_png(pixels), "png")

    def put_pack(self, entries: list[tuple[str, bytes]]) -> tuple[str, list[tuple[str, int, int]]]:
        """Store many small artifacts, each ``(key, bytes)`` with the key it would have alone
        (:class:`server.storage.packs.PackBuffer` makes them), as one pack file: the pack's
        key, and each entry's key with its offset and length in the pack. One file instead of
        thousands: creating a file costs this machine 0.3 ms, more than encoding a picture.

        The pack is named by the hash of its entries' keys, which fix its bytes as surely as
        hashing them again would, at a thousandth of the work."""
        placed, offset = [], 0
        for key, data in entries:
            placed.append((key, offset, len(data)))
            offset += len(data)
        names = hashlib.sha256("\n".join(key for key, _ in entries).encode())
        parts = [data for _key, data in entries]
        return self.put_parts(parts, PACK_SUFFIX, names.hexdigest()), placed

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of artifact ``key`` from ``offset`` (an entry of a pack)."""
        with self.path(key).open("rb") as file:
            file.seek(offset)
            return file.read(length)

    def put_array(self, array: np.ndarray) -> str:
        """Store a float array as NPY (no pickle: ``allow_pickle`` stays off on load)."""
        array = np.ascontiguousarray(array)
        header = io.BytesIO()  # np.save's bytes, without copying the data into a buffer first
        fields = np.lib.format.header_data_from_array_1_0(array)
        np.lib.format.write_array_header_1_0(header, fields)
        return self.put_parts([header.getvalue(), memoryview(array).cast("B")], "npy")

    def load_array(self, key: str) -> np.ndarray:
        return np.load(self.path(key), allow_pickle=False)

    def sweep_partials(self) -> int:
        """Remove the temporary files of writers that died mid-write: this machine's whose
        process is gone, and any older than a day. Returns how many were removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.glob(f"??/{PARTIAL}*"):
            machine, _, rest = path.name[len(PARTIAL) :].rpartition("-")[0].rpartition("-")
            pid = int(rest) if rest.isascii() and rest.isdigit() else None
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            mine_and_dead = machine == _machine() and pid is not None and not _alive(pid)
            if mine_and_dead or age > FOREIGN_PARTIAL_AGE:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def free_bytes(self) -> int:
        """Bytes free on the file system the store is (or will be) on."""
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        return shutil.disk_usage(existing).free


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """A uint8 (H, W, 3) photograph-like image as JPEG bytes (top-patch sprites: a tenth of the
    PNG's size, encoded 15× faster; the exact values are never read back from it)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


_SERIAL = itertools.count()  # temporary files' last name part (next() is atomic in CPython)


@functools.cache
def _machine() -> str:
    """This machine's name as a file-name part (no dashes, which separate the parts)."""
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:64] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != 0
