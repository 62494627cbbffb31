"""The demo's small CNN: five 3×3/5×5 convolutions with batch norm and ReLU (docs/algorithms.md §8).

Small enough to train on two CPU cores in a couple of minutes, deep enough that its first layer
learns colour blobs and edges and its last layers respond to whole shapes.
"""

from __future__ import annotations

from torch import nn

from analysis.demo.stimuli import CLASSES

DEMO_SPEC = "analysis.demo.model:demo_cnn"


def _block(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DemoCNN(nn.Module):
    """conv5×5(24) → pool → conv(48) → pool → conv(64) → conv(96) → pool → conv(128) → GAP → fc."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(3, 24, 5),
            nn.MaxPool2d(2),
            *_block(24, 48, 3),
            nn.MaxPool2d(2),
            *_block(48, 64, 3),
            *_block(64, 96, 3),
            nn.MaxPool2d(2),
            *_block(96, 128, 3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def demo_cnn() -> DemoCNN:
    """The factory named by :data:`DEMO_SPEC` (``module:callable`` model specs)."""
    return DemoCNN()
