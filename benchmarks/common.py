"""Shared set-up for the benchmarks: models, synthetic batches, timing, medians.

Benchmarks print ratios against a baseline measured in the same process on the same batches, so
the figures mean the same on any machine. They import only ``analysis/`` (torch, numpy, pillow),
so they run on a GPU machine without the web stack.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.layers import default_layers, list_layers
from analysis.models import InputSpec, load_model


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="'demo' or a model spec")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--repeats", type=int, default=5)


def prepare_model(
    spec: str, input_size: int | None, device: torch.device
) -> tuple[nn.Module, InputSpec, list[str]]:
    """The model in eval mode on ``device`` (channels_last on CUDA) and its default layers."""
    if spec == "demo":
        from analysis.demo.model import DEMO_SPEC

        spec, input_size = DEMO_SPEC, input_size or 64
    loaded = load_model(spec, input_size=input_size)
    layers = default_layers(list_layers(loaded.module, loaded.input))
    model = loaded.module.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, loaded.input, layers


def synthetic_batches(
    count: int, batch: int, size: int, device: torch.device
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        images = torch.rand(batch, 3, size, size, generator=generator).to(device)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        batches.append(images)
    return batches


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the sweep's setting); plain fp32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def timed(step: Callable[[int], None], iterations: int, device: torch.device) -> float:
    """Seconds for ``iterations`` calls of ``step(i)``, with the device drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(iterations):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return f"{name}; torch {torch.__version__}; python {platform.python_version()}"
