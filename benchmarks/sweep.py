"""Sweep throughput against the plain forward pass, on the same batches, in the same process.

    python benchmarks/sweep.py                                   # demo CNN on the CPU
    python benchmarks/sweep.py --model torchvision:vgg16 --batch-size 256 --device cuda

The sweep step is what ``analysis.sweep`` does per batch: hooks on every default layer (each
convolution's activation), per-image spatial max and argmax per channel, and the merge into the
running top-K (K = 100) on the device. Data loading is excluded from both sides. On CUDA both run
channels_last under bf16 autocast. Prints the median over repeats of each side's images/s and of
their ratio (sweep / forward; the goal is ≥ 0.90 on a GPU and ≥ 0.85 on a CPU).
"""

from __future__ import annotations

import argparse

import torch

from analysis.sweep import TopKRecorder
from benchmarks.common import (
    add_common_options,
    autocast,
    machine_description,
    median,
    prepare_model,
    synthetic_batches,
    timed,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--iterations", type=int, default=20, help="batches per timing")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument(
        "--no-overlap", action="store_true", help="keep reductions on the main CUDA stream"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    model, input_spec, layers = prepare_model(args.model, args.input_size, device)
    batch_size = args.batch_size or (256 if device.type == "cuda" else 64)
    batches = [
        input_spec.normalise(b) for b in synthetic_batches(4, batch_size, input_spec.height, device)
    ]
    valid = torch.ones(batch_size, dtype=torch.bool, device=device)

    def forward(i: int) -> None:
        model(batches[i % len(batches)])

    recorder = TopKRecorder(model, layers, args.top_k, device, overlap=not args.no_overlap)
    seen = [0]

    def sweep_step(i: int) -> None:
        indices = torch.arange(seen[0], seen[0] + batch_size, device=device)
        recorder.forward(batches[i % len(batches)], indices, valid)
        seen[0] += batch_size

    forward_rates, sweep_rates, ratios = [], [], []
    with torch.no_grad(), autocast(device):
        timed(forward, 3, device)  # warm-up: cudnn autotuning, allocator
        with recorder:
            timed(sweep_step, 3, device)
        for _ in range(args.repeats):
            forward_s = timed(forward, args.iterations, device)
            with recorder:
                sweep_s = timed(sweep_step, args.iterations, device)
            forward_rates.append(args.iterations * batch_size / forward_s)
            sweep_rates.append(args.iterations * batch_size / sweep_s)
            ratios.append(forward_s / sweep_s)

    print(f"machine: {machine_description(device)}")
    overlap = "on" if device.type == "cuda" and not args.no_overlap else "off"
    print(f"reductions on a side CUDA stream: {overlap}")
    print(
        f"model: {args.model}, {input_spec.height} px, batch {batch_size}, {len(layers)} layers "
        f"({', '.join(layers)}), K = {args.top_k}"
    )
    print(f"plain forward: {median(forward_rates):,.0f} img/s (median of {args.repeats})")
    print(f"sweep:         {median(sweep_rates):,.0f} img/s")
    every = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"ratio sweep/forward: {median(ratios):.3f} (median; all: {every})")


if __name__ == "__main__":
    main()
