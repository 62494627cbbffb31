"""End to end on a photo folder: `analyze --no-indexes` against its decode and forward bounds.

    python benchmarks/e2e.py                       # 600 JPEGs, ResNet-18 layer3+layer4, K = 50
    python benchmarks/e2e.py --images 500 --model torchvision:vgg16 --layers all --device cuda
    python benchmarks/e2e.py --images 100 --photo-size 4000x3000 [--jpeg-draft]  # camera photos

It writes (once, seeded) a folder of photograph-like JPEGs, 500×375 at quality 90: 1/f² noise
(the power spectrum of natural images) in colour, with discs, bars and rings on top (scaled up,
with grain, for ``--photo-size``). Then, in
one process family on one machine (a fresh child process for (a) and (b) each repeat), it times

  (a) decode: every image decoded and resized once by the sweep's loader, one process per core;
  (b) forward: a plain forward over those decoded batches (no hooks, no top-K), under the
      allocator settings the CLI uses (the default allocator's time is printed beside it);
  (c) ``neuronscope analyze --no-indexes`` through the CLI in a fresh data directory, with the
      analysis's own stage times (sweep, Neuron Features and patches).

and prints the ratios the goal is stated in: wall / max(decode, forward), and NF stage / sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.allocator import reuse_freed_memory
from analysis.data import ImageTensors, model_pixels, scan_image_folder
from analysis.machine import usable_cores
from analysis.models import load_model
from analysis.sweep import loader_workers
from benchmarks.common import autocast, machine_description

WIDTH, HEIGHT = 500, 375


def photo_like(rng: np.random.Generator) -> np.ndarray:
    """One 375×500 RGB uint8 image: coloured 1/f² noise with a few shapes on it."""
    fy = np.fft.fftfreq(HEIGHT)[:, None]
    fx = np.fft.rfftfreq(WIDTH)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(WIDTH, HEIGHT))
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        noise = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(HEIGHT, WIDTH))
        channels.append((noise - noise.mean()) / (noise.std() + 1e-9))
    mix = rng.normal(0, 1, (3, 3)) * 0.4 + np.eye(3)  # correlated channels, as in photographs
    image = np.einsum("ij,jhw->hwi", mix, np.stack(channels)) * 0.12 + rng.uniform(0.3, 0.7, 3)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    for _ in range(rng.integers(2, 6)):
        colour = rng.uniform(0, 1, 3)
        cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
        radius = rng.uniform(15, 90)
        distance = np.hypot(rows - cy, cols - cx)
        kind = rng.integers(3)
        if kind == 0:
            mask = distance < radius
        elif kind == 1:
            mask = np.abs(distance - radius) < radius / 6
        else:
            angle = rng.uniform(0, np.pi)
            along = (cols - cx) * np.cos(angle) + (rows - cy) * np.sin(angle)
            across = -(cols - cx) * np.sin(angle) + (rows - cy) * np.cos(angle)
            mask = (np.abs(across) < radius / 5) & (np.abs(along) < radius * 1.5)
        image[mask] = colour
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def photo_folder(
    root: Path, count: int, seed: int = 0, size: tuple[int, int] = (WIDTH, HEIGHT)
) -> Path:
    """``count`` JPEGs of ``size`` (width, height) in ``root`` (kept between runs: only missing
    ones are written). Larger than 500×375, each is scaled up bicubically with fine grain on
    top, so the file is as dense as a camera's."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = photo_like(rng)
        path = root / f"{index:05d}.jpg"
        if path.exists():
            continue
        image = Image.fromarray(pixels)
        if size != (WIDTH, HEIGHT):
            grain = rng.integers(-6, 7, (size[1], size[0], 3), dtype=np.int16)
            scaled = np.asarray(image.resize(size, Image.BICUBIC), dtype=np.int16) + grain
            image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
        image.save(path, quality=90)
    return root


def decode_and_forward(
    folder: Path,
    spec: str,
    size: int,
    device: torch.device,
    batch: int,
    workers: int,
    draft: bool = False,
) -> tuple[float, float, float]:
    """(a) seconds to decode and resize every image once with the sweep's loader, and (b) a
    plain forward over the decoded batches, first with the C library's default allocator
    settings, then with those ``neuronscope`` runs under (:mod:`analysis.allocator`)."""
    listing = scan_image_folder(folder)
    dataset = ImageTensors(listing, size, draft=draft)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers)
    started = time.perf_counter()
    batches = [images for images, _index, _ok in loader]
    decode = time.perf_counter() - started
    loaded = load_model(spec, input_size=size)
    model = loaded.module.to(device).eval().to(memory_format=torch.channels_last)

    def forward() -> float:
        with torch.no_grad(), autocast(device):
            model(loaded.input.normalise(model_pixels(batches[0][:2].to(device))))  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            for images in batches:
                model(loaded.input.normalise(model_pixels(images.to(device))))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return time.perf_counter() - started

    default = forward()
    reuse_freed_memory()
    return decode, default, forward()


def analyze_through_cli(
    folder: Path,
    spec: str,
    layers: str,
    k: int,
    device: str,
    batch: int,
    workers: int | None,
    draft: bool = False,
) -> dict:
    """``neuronscope analyze --no-indexes`` in a fresh data directory; its summary and wall."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "NEURONSCOPE_DATA_DIR": data_dir}
        env.pop("NEURONSCOPE_DATABASE_URL", None)
        command = [
            sys.executable, "-m", "server.cli.main", "analyze", "--model", spec,
            "--data", str(folder), "--top-k", str(k), "--no-indexes", "--json",
            "--device", device, "--batch-size", str(batch),
        ]  # fmt: skip
        if workers is not None:
            command += ["--workers", str(workers)]
        if draft:
            command.append("--jpeg-draft")
        if layers != "all":
            command += ["--layers", layers]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"analyze failed: {done.stderr.strip()[-2000:]}")
    summary = json.loads(done.stdout)
    summary["wall"] = wall
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "ns-photos")
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--layers", default="layer3,layer4", help="names, or 'all' (defaults)")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, help="loader processes (default: the CLI's, one per core)"
    )
    parser.add_argument(
        "--photo-size", default=f"{WIDTH}x{HEIGHT}", help="WIDTHxHEIGHT, e.g. 4000x3000"
    )
    parser.add_argument(
        "--jpeg-draft", action="store_true", help="decode (bound and analysis) with --jpeg-draft"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bounds-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    cores = usable_cores()
    photo = tuple(int(side) for side in args.photo_size.lower().split("x"))
    name = str(args.images) if photo == (WIDTH, HEIGHT) else f"{args.images}-{args.photo_size}"
    folder = photo_folder(args.folder / name, args.images, size=photo)
    if args.bounds_only:  # a child process, so each repeat starts with the default allocator
        bounds = decode_and_forward(
            folder,
            args.model,
            args.size,
            device,
            args.batch_size,
            args.workers or cores,
            args.jpeg_draft,
        )
        print(json.dumps(bounds))
        return
    print(machine_description(device))
    print(
        f"{args.images} JPEGs {photo[0]}×{photo[1]} q90{' (--jpeg-draft)' * args.jpeg_draft} "
        f"in {folder}; {args.model} at {args.size} px, "
        f"layers {args.layers}, K = {args.top_k}, batch {args.batch_size}, "
        f"loaders: {args.workers or cores} decoding the bound, "
        f"{args.workers or loader_workers(device)} in the analysis"
    )
    rows = []
    for _ in range(args.repeats):
        measured = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--bounds-only"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        decode, default_forward, forward = json.loads(measured.stdout.splitlines()[-1])
        summary = analyze_through_cli(
            folder,
            args.model,
            args.layers,
            args.top_k,
            args.device,
            args.batch_size,
            args.workers,
            args.jpeg_draft,
        )
        stats = summary["stats"]
        rows.append((decode, default_forward, forward, summary["wall"], stats["sweep_seconds"],
                     stats["features_seconds"]))  # fmt: skip
    decode, default_forward, forward, wall, sweep, features = (
        statistics.median(c) for c in zip(*rows, strict=True)
    )
    bound = max(decode, forward)
    print(f"(a) decode + resize once:   {decode:7.1f} s  ({args.images / decode:.0f} img/s)")
    print(f"(b) plain forward:          {forward:7.1f} s  ({args.images / forward:.0f} img/s)")
    print(f"    (default allocator:     {default_forward:7.1f} s, not the bound)")
    print(f"(c) analyze --no-indexes:   {wall:7.1f} s wall (CLI start-up included)")
    print(f"      sweep                 {sweep:7.1f} s")
    print(f"      NFs and patches       {features:7.1f} s")
    rest = wall - sweep - features
    print(f"      the rest              {rest:7.1f} s  (start-up, model, layers, database)")
    print(f"wall / max(decode, forward) = {wall / bound:.2f}   (goal ≤ 1.25)")
    print(f"NF stage / sweep            = {features / sweep:.2f}   (goal ≤ 0.25)")


if __name__ == "__main__":
    main()
