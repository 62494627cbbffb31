"""A run's pictures written as pack files / one file a picture, in one process.

    python -m benchmarks.packs [--pictures 6000] [--repeats 3] [--folder DIR]

Encodes ``--pictures`` NF-like PNGs and sprite-like JPEGs (smooth seeded noise, the sizes of a
late ResNet-50 layer's: 214 px and five 96 px tiles) once, then stores them into a fresh artifact
store in ``--folder`` (on the disk to be measured; default: the temporary folder) both ways:
each as a file of its own (``ArtifactStore.put_bytes``, as the Neuron Feature stage did) and
into 64 MB packs (``PackBuffer``, as it does now). Prints the median seconds of each and their
ratio; encoding is not timed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from server.storage.artifacts import ArtifactStore, encode_jpeg
from server.storage.packs import PackBuffer
from server.storage.png import encode_png


def pictures(count: int, seed: int = 0) -> list[tuple[bytes, str]]:
    """``count`` (PNG, JPEG) pairs of smooth seeded noise, as ``(bytes, suffix)``."""
    rng = np.random.default_rng(seed)
    found: list[tuple[bytes, str]] = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
        display = np.asarray(Image.fromarray(coarse).resize((214, 214), Image.BICUBIC))
        tiles = np.asarray(Image.fromarray(coarse).resize((484, 96), Image.BICUBIC))
        found += [(encode_png(display), "png"), (encode_jpeg(tiles), "jpg")]
    return found


def as_files(store: ArtifactStore, entries: list[tuple[bytes, str]]) -> None:
    for data, suffix in entries:
        store.put_bytes(data, suffix)


def as_packs(store: ArtifactStore, entries: list[tuple[bytes, str]]) -> None:
    pack = PackBuffer(store)
    for data, suffix in entries:
        pack.add(data, suffix)
        if pack.full:
            pack.write()
    pack.write()


def timed(write, entries: list[tuple[bytes, str]], root: Path) -> float:
    shutil.rmtree(root, ignore_errors=True)
    store = ArtifactStore(root)
    started = time.perf_counter()
    write(store, entries)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=6000, help="neurons (two pictures each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    entries = pictures(args.pictures)
    megabytes = sum(len(data) for data, _ in entries) / 1e6
    print(f"{len(entries):,} pictures, {megabytes:,.0f} MB, into {args.folder}")
    root = args.folder / "ns-bench-packs"
    files, packs = [], []
    for _ in range(args.repeats):
        files.append(timed(as_files, entries, root))
        packs.append(timed(as_packs, entries, root))
    shutil.rmtree(root, ignore_errors=True)
    file_s, pack_s = statistics.median(files), statistics.median(packs)
    print(f"a file a picture: {file_s:.2f} s ({1e3 * file_s / len(entries):.3f} ms a picture)")
    print(f"packs:            {pack_s:.2f} s ({1e3 * pack_s / len(entries):.3f} ms a picture)")
    print(f"packs / files: {pack_s / file_s:.2f} (medians of {args.repeats})")


if __name__ == "__main__":
    main()
