"""Images that users upload: checked, bounded, and stored once under the hash of their bytes.

The web process checks an upload without decoding more than it must: the header gives the pixel
count, which is bounded before any pixel is decoded (a decompression bomb is refused here, not
discovered by a worker that runs out of memory); then a full decode proves the file is whole.
Nothing is stored unless every check passes. Greyscale, palette, 16-bit and alpha images are
accepted; workers convert them to RGB as the sweep does.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.storage.artifacts import ArtifactStore
from server.storage.schema import Upload

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
SUFFIXES = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}


class UploadError(ValueError):
    """An upload that is refused; ``status`` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


def check_image(data: bytes, limits: UploadLimits) -> tuple[str, int, int, str]:
    """The format, width, height and mode of an acceptable image, or :class:`UploadError`."""
    if not data:
        raise UploadError("the upload is empty: choose an image file")
    if len(data) > limits.max_bytes:
        raise UploadError(
            f"the file is {readable_size(len(data))} ({len(data):,} bytes); uploads are limited to "
            f"{readable_size(limits.max_bytes)} ({limits.max_bytes:,} bytes, "
            "NEURONSCOPE_MAX_UPLOAD_BYTES)",
            413,
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height, fmt, mode = image.width, image.height, image.format, image.mode
            if width * height > limits.max_pixels:
                raise _too_many_pixels(f"{width}×{height} = {width * height / 1e6:.1f}", limits)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
    except UploadError:
        raise
    except Image.DecompressionBombError as error:
        # Pillow refuses at its header when it is over twice its own limit, before ours is
        # asked: the same refusal, with the count it read.
        counted = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(counted.group(1)) / 1e6:,.0f}" if counted else "far more than"
        raise _too_many_pixels(pixels, limits) from None
    except UnidentifiedImageError:
        raise UploadError("the file is not an image that can be read (PNG, JPEG, ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as error:
        raise UploadError(f"the image cannot be decoded (truncated or damaged?): {error}") from None
    if fmt not in SUFFIXES:
        raise UploadError(f"{fmt} images are not accepted; use PNG, JPEG, GIF, BMP, WebP or TIFF")
    return fmt, width, height, mode


def readable_size(count: int) -> str:
    """A size as people read it: ``"20 MiB"``, ``"20.1 MiB"``, ``"48.8 KiB"``."""
    value, unit = (count / 2**20, "MiB") if count >= 2**20 else (count / 2**10, "KiB")
    return f"{value:.0f} {unit}" if value == round(value) else f"{value:.1f} {unit}"


def _too_many_pixels(size: str, limits: UploadLimits) -> UploadError:
    return UploadError(
        f"the image is {size} megapixels; uploads are limited to "
        f"{limits.max_pixels / 1e6:g} megapixels (NEURONSCOPE_MAX_UPLOAD_PIXELS)",
        413,
    )


def store_upload(
    session: Session,
    store: ArtifactStore,
    data: bytes,
    filename: str,
    limits: UploadLimits = UploadLimits(),
) -> Upload:
    """The upload of these bytes: found if the same bytes came before, else checked and stored."""
    digest = hashlib.sha256(data).hexdigest()
    found = session.scalar(select(Upload).where(Upload.sha256 == digest))
    if found is not None:
        return found
    fmt, width, height, mode = check_image(data, limits)
    upload = Upload(
        sha256=digest,
        filename=(filename or "upload")[:300],
        image_key=store.put_bytes(data, SUFFIXES[fmt]),
        width=width,
        height=height,
        mode=mode,
    )
    session.add(upload)
    session.flush()
    return upload
