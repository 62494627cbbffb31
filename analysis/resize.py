"""How an image file becomes a model input, and where its pixels land (docs/algorithms.md §1).

Two policies: ``whole`` squeezes the whole image to the input's height × width; ``center-crop``
scales it, keeping its aspect, to the smallest size that covers the input, then keeps the
centre. :class:`InputMap` maps points and windows both ways between the image file's own pixels
and the model's input pixels. The loader resizes by it, decompositions report their windows in
the uploaded image's pixels by it, and the web finds the map position under a clicked pixel by
it, so the three always agree. Plain Python: the web process imports it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ResizePolicy(StrEnum):
    """How a raw image becomes a model input of (height, width)."""

    WHOLE = "whole"  # the whole image squeezed to height x width
    CENTER_CROP = "center-crop"  # scaled to cover height x width, then the central part


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
        return cls(image_size[0], image_size[1], height, width, ResizePolicy(policy))

    @property
    def scale(self) -> float:
        """The centre crop's one scaling factor: the smallest that covers the input."""
        return max(self.input_height / self.height, self.input_width / self.width)

    @property
    def resized(self) -> tuple[int, int]:
        """(width, height) the image is resized to before any crop."""
        if self.policy is not ResizePolicy.CENTER_CROP:
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
        if self.policy is ResizePolicy.CENTER_CROP:
            left, top, _right, _bottom = self.crop
            return y * self.scale - top, x * self.scale - left
        return y * self.input_height / self.height, x * self.input_width / self.width

    def to_original(self, y: float, x: float) -> tuple[float, float]:
        """A point of the model input in the image file's pixels (the inverse of
        :meth:`to_input`)."""
        if self.policy is ResizePolicy.CENTER_CROP:
            left, top, _right, _bottom = self.crop
            return (y + top) / self.scale, (x + left) / self.scale
        return y * self.height / self.input_height, x * self.width / self.input_width

    def window_to_original(self, window: tuple[int, int, int, int]) -> list[int]:
        """A window [r0, r1, c0, c1] in model-input pixels, in the image file's whole pixels."""
        r0, r1, c0, c1 = window
        (top, left), (bottom, right) = self.to_original(r0, c0), self.to_original(r1, c1)
        return [round(top), round(bottom), round(left), round(right)]
