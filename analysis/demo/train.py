"""Train the demo CNN on the generated stimuli, deterministically, on the CPU.

Adam with a one-cycle schedule and light augmentation (flips) reaches high validation accuracy
in a few epochs. A small stimulus set (the tests' 60 images) fits in one batch, so its epochs
are also run until the optimiser has taken ``MIN_STEPS`` steps: eight steps left the network at
chance, its last layer no more class-selective than random weights. The result is saved as
safetensors with the input convention and the validation accuracy in its metadata, so
``load_model`` needs no extra flags for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from analysis.demo.model import DemoCNN
from analysis.demo.stimuli import CLASSES
from analysis.metadata import META_CLASSES, META_INPUT_SIZE, META_MEAN, META_STD
from analysis.safetensors_io import save_safetensors

EpochCallback = Callable[[int, int, float], None]

MIN_STEPS = 40


def training_epochs(
    images: int,
    epochs: int = 8,
    batch_size: int = 64,
    val_fraction: float = 0.15,
    min_steps: int = MIN_STEPS,
) -> int:
    """The epochs :func:`train_demo_cnn` runs: ``epochs``, or more where that would take fewer
    than ``min_steps`` optimiser steps."""
    steps_per_epoch = -(-(images - int(images * val_fraction)) // batch_size)
    return max(epochs, -(-min_steps // steps_per_epoch))


@dataclass(frozen=True)
class TrainingReport:
    epochs: int
    train_images: int
    val_images: int
    val_accuracy: float
    seconds: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def train_demo_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    weights_path: Path,
    epochs: int = 8,
    batch_size: int = 64,
    val_fraction: float = 0.15,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    min_steps: int = MIN_STEPS,
) -> TrainingReport:
    """Train on ``images`` (N, H, W, 3) uint8, validate on a held-out split, save safetensors.

    Runs :func:`training_epochs` epochs: at least ``epochs``, and at least ``min_steps`` steps.
    """
    epochs = training_epochs(len(images), epochs, batch_size, val_fraction, min_steps)
    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = tuple(float(m) for m in pixels.mean(dim=(0, 2, 3)))
    std = tuple(float(s) for s in pixels.std(dim=(0, 2, 3)))
    inputs = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    targets = torch.from_numpy(labels)
    order = torch.randperm(len(inputs), generator=generator)
    val_count = int(len(inputs) * val_fraction)
    val_idx, train_idx = order[:val_count], order[val_count:]

    model = DemoCNN()
    steps = epochs * -(-len(train_idx) // batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        shuffled = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for first in range(0, len(shuffled), batch_size):
            batch = shuffled[first : first + batch_size]
            x = inputs[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            loss = F.cross_entropy(model(x), targets[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        accuracy = evaluate(model, inputs[val_idx], targets[val_idx])
        if on_epoch:
            on_epoch(epoch + 1, epochs, accuracy)
    model.eval()
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(
        model.state_dict(),
        weights_path,
        metadata={
            META_INPUT_SIZE: str(images.shape[1]),
            META_MEAN: ",".join(f"{m:.6f}" for m in mean),
            META_STD: ",".join(f"{s:.6f}" for s in std),
            "neuronscope.val_accuracy": f"{accuracy:.4f}",
            META_CLASSES: ",".join(CLASSES),
            "neuronscope.epochs": str(epochs),
        },
    )
    return TrainingReport(
        epochs=epochs,
        train_images=len(train_idx),
        val_images=val_count,
        val_accuracy=accuracy,
        seconds=time.perf_counter() - start,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
    )


@torch.no_grad()
def evaluate(model: DemoCNN, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval()
    correct = sum(
        int((model(inputs[i : i + 256]).argmax(1) == targets[i : i + 256]).sum())
        for i in range(0, len(inputs), 256)
    )
    return correct / max(len(inputs), 1)
