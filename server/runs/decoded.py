"""Dataset images as the model saw them, decoded once per run and kept for its later stages."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from analysis.data import ImageFolder, as_float, load_pixels
from analysis.models import InputSpec
from analysis.resize import ResizePolicy
from server.storage.schema import Run

IMAGE_CACHE_BYTES = 1 << 30  # decoded images kept between the layers of a stage


def run_decoding(run: Run) -> tuple[ResizePolicy, bool]:
    """How ``run`` turns files into the model's pixels: its resize policy, and whether JPEGs may
    decode at a reduced DCT scale (a run parameter, as it changes the pixels)."""
    return ResizePolicy.of(run.params["resize"]), bool(run.params.get("jpeg_draft", False))


class DecodedImages:
    """Dataset images as the model saw them, decoded once and kept as uint8 in memory up to
    IMAGE_CACHE_BYTES; beyond that the least recently used are let go, so a million-image
    folder stays bounded.

    The sweep hands over its batches (:meth:`keep`), so on a folder that fits, the Neuron
    Feature and index stages decode nothing; an image that several layers' neurons chose is
    decoded once per stage while it fits."""

    def __init__(
        self,
        folder: ImageFolder,
        input_spec: InputSpec,
        policy: ResizePolicy,
        draft: bool = False,
    ) -> None:
        self.folder = folder
        self.input_spec = input_spec
        self.policy = policy
        self.draft = draft
        self.capacity = max(1, IMAGE_CACHE_BYTES // (input_spec.height * input_spec.width * 3))
        self._pixels: OrderedDict[int, np.ndarray] = OrderedDict()

    @classmethod
    def of_run(cls, folder: ImageFolder, input_spec: InputSpec, run: Run) -> DecodedImages:
        """Decoding as ``run`` decodes: its resize policy, and its JPEG draft choice."""
        policy, draft = run_decoding(run)
        return cls(folder, input_spec, policy, draft)

    def _hold(self, index: int, pixels: np.ndarray) -> None:
        self._pixels[index] = pixels
        self._pixels.move_to_end(index)
        while len(self._pixels) > self.capacity:
            self._pixels.popitem(last=False)

    def keep(self, pixels: torch.Tensor, indices: torch.Tensor) -> None:
        """Hold a decoded uint8 (N, H, W, 3) batch (the sweep's ``keep``)."""
        for index, image in zip(indices.tolist(), pixels.numpy(), strict=True):
            self._hold(index, image.copy())  # a view would keep its whole batch alive

    def pixels(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 (H, W, 3)."""
        found = self._pixels.get(index)
        if found is None:
            path = self.folder.root / self.folder.images[index].path
            spec = self.input_spec
            found = load_pixels(path, spec.size, self.policy, spec.grey, self.draft)
        self._hold(index, found)
        return found

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` as float32 (H, W, 3) in [0, 1], as :func:`load_rgb` gives it."""
        return as_float(self.pixels(index))
