"""An image folder as the sweep reads it: a flat folder, or one subfolder per class.

Files are listed in sorted order so an image's index is stable; the folder's fingerprint (paths,
sizes, modification times) pins a run to exactly these files. Images are resized to the model's
input size and kept as RGB in [0, 1]; normalisation happens on the device, so the same pixels
serve for patches. A file that cannot be decoded yields a flagged blank image instead of ending a
sweep over a million files.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from analysis.resize import InputMap, ResizePolicy

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}  # a policy's resampling

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
)


class DatasetError(ValueError):
    """An image folder that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class ImageEntry:
    """One file of the folder: its path relative to the root and its class label (or None)."""

    path: str
    label: str | None
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class ImageFolder:
    """The listing of an image folder: the images, and the files that are not images."""

    root: Path
    images: tuple[ImageEntry, ...]
    skipped: tuple[str, ...]

    @property
    def labels(self) -> list[str | None]:
        return [entry.label for entry in self.images]

    def fingerprint(self) -> str:
        """SHA-256 over (path, size, mtime) of every image: cheap, and changes when a file does."""
        digest = hashlib.sha256()
        for entry in self.images:
            digest.update(f"{entry.path}\0{entry.size_bytes}\0{entry.mtime_ns}\n".encode())
        return digest.hexdigest()


def scan_image_folder(root: str | Path) -> ImageFolder:
    """List the images under ``root``; a file in a subfolder takes the top subfolder as label."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    images: list[ImageEntry] = []
    skipped: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for filename in sorted(files):
            if filename.startswith("."):
                continue
            path = Path(directory) / filename
            relative = path.relative_to(root).as_posix()
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(relative)
                continue
            stat = path.stat()
            label = relative.split("/", 1)[0] if "/" in relative else None
            images.append(ImageEntry(relative, label, stat.st_size, stat.st_mtime_ns))
    images.sort(key=lambda entry: entry.path)
    if not images:
        raise DatasetError(f"no images found in {root}")
    return ImageFolder(root=root, images=tuple(images), skipped=tuple(skipped))


def load_rgb(
    path: str | Path,
    size: int | tuple[int, int],
    policy: ResizePolicy = ResizePolicy.WHOLE,
    grey: bool = False,
    draft: bool = False,
) -> np.ndarray:
    """Decode ``path`` as a float32 (height, width, 3) RGB array in [0, 1]: the model's pixels."""
    return as_float(load_pixels(path, size, policy, grey, draft))


def as_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1], exactly as :func:`load_rgb` returns them."""
    return pixels.astype(np.float32) / 255.0


def load_pixels(
    path: str | Path,
    size: int | tuple[int, int],
    policy: ResizePolicy = ResizePolicy.WHOLE,
    grey: bool = False,
    draft: bool = False,
) -> np.ndarray:
    """Decode ``path`` as a uint8 (height, width, 3) RGB array at the model's input size (a
    quarter of the float array's memory, for caches).

    ``size`` is (height, width), or one int for a square. Pillow's resampling (bilinear, or the
    policy's bicubic) low-pass filters when shrinking (antialiasing), as docs/algorithms.md §1 asks.
    ``grey`` reads the image as a greyscale model sees it (luminance, R = G = B), so its patches and
    NFs show what it saw.

    ``draft`` lets a JPEG decode at the smallest DCT scale (1/2, 1/4 or 1/8) that still covers
    the size it is resized to, which libjpeg does from fewer coefficients: a 12-megapixel photo
    for a 224 px model decodes about 4× faster. The pixels differ from a full decode by the
    scaling's own low-pass filter (a fraction of a grey level on average), so it is a run's choice;
    the image's extent maps to the same place either way, and other formats decode in full.
    """
    height, width = (size, size) if isinstance(size, int) else size
    policy = ResizePolicy.of(policy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            placed = InputMap.of(image.size, (height, width), policy)
            drafted = image.draft(image.mode, placed.resized) if draft else None
            extent = drafted[1] if drafted else None  # the full image, in the decoded pixels
            image = _in_mode(_in_mode(image, "L"), "RGB") if grey else _in_mode(image, "RGB")
            image = image.resize(placed.resized, FILTERS[policy.interpolation], box=extent)
            if policy.crops:
                image = image.crop(placed.crop)
            return np.array(image, dtype=np.uint8)  # writable: torch wraps it as is


def jpeg_draft_scale(
    path: str | Path, size: int | tuple[int, int], policy: ResizePolicy = ResizePolicy.WHOLE
) -> int:
    """How many times smaller ``draft`` decoding would decode ``path`` (8, 4 or 2; 1 for a file
    that is no JPEG, cannot be read, or is under twice the size it is resized to). Reads the
    header only, so a folder can be sampled before a run to suggest it."""
    height, width = (size, size) if isinstance(size, int) else size
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return 1
            resized = InputMap.of(image.size, (height, width), policy).resized
            fits = min(image.width // resized[0], image.height // resized[1])
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return 1
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


# 16-bit greyscale (PNG, TIFF) opens as one of these; 32-bit integer images hold the same range.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _in_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode``. Pillow's ``convert`` to the mode an image already has makes a full
    copy (36 MB for a 12-megapixel photo), so that case returns the image itself.

    A 16-bit image is scaled to 8 bits (v / 257, so 65535 is white) first: Pillow's own
    conversion clips every value above 255 to white, which made a 16-bit photograph all white.
    """
    if image.mode in WIDE_MODES:
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L")
    return image if image.mode == mode else image.convert(mode)


class ImageTensors(Dataset):
    """``(image HWC uint8, index, readable)`` for each chosen image of a folder.

    Loader processes hand the main process uint8, a quarter of the float bytes; there
    :func:`model_pixels` turns a batch into the model's float input, and the same uint8 can be
    kept for the next stage without decoding again.
    """

    def __init__(
        self,
        folder: ImageFolder,
        size: int | tuple[int, int],
        policy: ResizePolicy = ResizePolicy.WHOLE,
        indices: range | None = None,
        grey: bool = False,
        draft: bool = False,
    ) -> None:
        self.folder = folder
        self.size = (size, size) if isinstance(size, int) else size
        self.policy = policy
        self.indices = indices if indices is not None else range(len(folder.images))
        self.grey = grey
        self.draft = draft

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, bool]:
        index = self.indices[position]
        path = self.folder.root / self.folder.images[index].path
        try:
            pixels = load_pixels(path, self.size, self.policy, self.grey, self.draft)
        except (
            OSError,
            UnidentifiedImageError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            return torch.zeros(*self.size, 3, dtype=torch.uint8), index, False
        return torch.from_numpy(pixels), index, True


def model_pixels(images: torch.Tensor) -> torch.Tensor:
    """A uint8 (N, H, W, 3) batch as the float (N, 3, H, W) images in [0, 1] that
    :func:`load_rgb` gives, bit for bit, laid out channels-last (the layout the sweep runs in)."""
    return images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
