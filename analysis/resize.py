"""How an image file becomes a model input, and where its pixels land (docs/algorithms.md §1).

Two policies: ``whole`` squeezes the whole image to the input's height × width; ``center-crop``
scales it, keeping its aspect, to cover the input (or to a zoo model's own resize size), then keeps
the centre. :class:`InputMap` maps points and windows both ways between the image file's own pixels
and the model's input pixels. The loader resizes by it, decompositions report their windows in the
uploaded image's pixels by it, and the web finds the map position under a clicked pixel by it, so
the three always agree. Plain Python: the web process imports it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

MODES = ("whole", "center-crop")
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class ResizePolicy:
    """How a raw image becomes a model input of (height, width).

    ``whole`` squeezes the image to the input; ``center-crop`` scales it, keeping its aspect,
    so its shorter side is ``resize_to`` (at least enough to cover the input; None: just
    enough), then keeps the centre. A zoo model's evaluation transform is one of these:
    torchvision's ResNet-50 V2 weights resize to 232 and crop 224, bilinear; timm's resize to
    ⌊224 / crop_pct⌋, mostly bicubic. Written as text in a run's parameters (:attr:`value`):
    ``whole``, ``center-crop``, ``center-crop 232``, ``center-crop 235 bicubic``.
    """

    mode: str = "whole"
    resize_to: int | None = None
    interpolation: str = "bilinear"

    WHOLE: ClassVar[ResizePolicy]
    CENTER_CROP: ClassVar[ResizePolicy]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"resize must be {' or '.join(MODES)}, not {self.mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be {' or '.join(INTERPOLATIONS)}")
        if self.resize_to is not None and (self.mode != "center-crop" or self.resize_to < 1):
            raise ValueError("only a centre crop resizes to a size first, of at least 1 px")

    @classmethod
    def of(cls, text: str | ResizePolicy) -> ResizePolicy:
        """Parse :attr:`value`'s text (a policy passes through); ValueError names the problem."""
        if isinstance(text, ResizePolicy):
            return text
        mode, *rest = str(text).split() or [""]
        resize_to, interpolation = None, "bilinear"
        for part in rest:
            if part.isdigit():
                resize_to = int(part)
            else:
                interpolation = part
        return cls(mode, resize_to, interpolation)

    @property
    def value(self) -> str:
        words = [self.mode]
        if self.resize_to is not None:
            words.append(str(self.resize_to))
        if self.interpolation != "bilinear":
            words.append(self.interpolation)
        return " ".join(words)

    @property
    def crops(self) -> bool:
        return self.mode == "center-crop"

    def __str__(self) -> str:
        return self.value


ResizePolicy.WHOLE = ResizePolicy()
ResizePolicy.CENTER_CROP = ResizePolicy("center-crop")


@dataclass(frozen=True)
class InputMap:
    """Where an image of ``width`` × ``height`` pixels lies on a model input of
    ``input_height`` × ``input_width`` under ``policy``.

    Coordinates are continuous pixel positions (0 is the top or left edge), rows first.
    """

    width: int
    height: int
    input_height: int
    input_width: int
    policy: ResizePolicy = ResizePolicy.WHOLE

    @classmethod
    def of(
        cls,
        image_size: tuple[int, int],
        input_size: int | tuple[int, int] | list[int],
        policy: ResizePolicy | str = ResizePolicy.WHOLE,
    ) -> InputMap:
        """The map of an image of ``image_size`` = (width, height), as Pillow gives it, onto an
        input of ``input_size`` = (height, width), or one int for a square input (decompositions
        stored before non-square input hold one)."""
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        return cls(image_size[0], image_size[1], height, width, ResizePolicy.of(policy))

    @property
    def scale(self) -> float:
        """The centre crop's one scaling factor: the smallest that covers the input, or more to
        bring the shorter side to the policy's ``resize_to``."""
        cover = max(self.input_height / self.height, self.input_width / self.width)
        if self.policy.resize_to is None:
            return cover
        return max(cover, self.policy.resize_to / min(self.height, self.width))

    @property
    def resized(self) -> tuple[int, int]:
        """(width, height) the image is resized to before any crop."""
        if not self.policy.crops:
            return self.input_width, self.input_height
        scale = self.scale
        return (
            max(round(self.width * scale), self.input_width),
            max(round(self.height * scale), self.input_height),
        )

    @property
    def crop(self) -> tuple[int, int, int, int]:
        """The input's box (left, top, right, bottom) in the resized image."""
        resized_width, resized_height = self.resized
        left = (resized_width - self.input_width) // 2
        top = (resized_height - self.input_height) // 2
        return left, top, left + self.input_width, top + self.input_height

    def to_input(self, y: float, x: float) -> tuple[float, float]:
        """A point of the image file in model-input pixels."""
        if self.policy.crops:
            left, top, _right, _bottom = self.crop
            return y * self.scale - top, x * self.scale - left
        return y * self.input_height / self.height, x * self.input_width / self.width

    def to_original(self, y: float, x: float) -> tuple[float, float]:
        """A point of the model input in the image file's pixels (the inverse of
        :meth:`to_input`)."""
        if self.policy.crops:
            left, top, _right, _bottom = self.crop
            return (y + top) / self.scale, (x + left) / self.scale
        return y * self.height / self.input_height, x * self.width / self.input_width

    def window_to_original(self, window: tuple[int, int, int, int]) -> list[int]:
        """A window [r0, r1, c0, c1] in model-input pixels, in the image file's whole pixels."""
        r0, r1, c0, c1 = window
        (top, left), (bottom, right) = self.to_original(r0, c0), self.to_original(r1, c1)
        return [round(top), round(bottom), round(left), round(right)]
