"""The sweep: top-K against brute force, exact sharding, unreadable files, dead neurons."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from analysis.data import ImageTensors, model_pixels, scan_image_folder
from analysis.models import InputSpec
from analysis.sweep import loader_start_method, loader_workers, merge_sweeps, sweep
from tests.support.models import random_net

SPEC = InputSpec(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
LAYERS = ["1", "4"]


def brute_force(model, folder, layer_index: int, k: int):
    """Per-image maxima and argmax positions, one image at a time, sorted by (-value, index)."""
    dataset = ImageTensors(folder, SPEC.size)
    results = []
    with torch.no_grad():
        for position in range(len(dataset)):
            image, index, _ = dataset[position]
            out = model[: layer_index + 1](SPEC.normalise(model_pixels(image[None])))[0]
            flat = out.reshape(out.shape[0], -1)
            values, where = flat.max(1)
            results.append((index, values, where, out.shape[-1]))
    channels = results[0][1].shape[0]
    expected = []
    for c in range(channels):
        entries = [
            (float(v[c]), i, int(w[c]) // width, int(w[c]) % width) for i, v, w, width in results
        ]
        entries.sort(key=lambda e: (-e[0], e[1]))
        expected.append(entries[:k])
    return expected


def test_top_k_matches_brute_force(square_folder):
    model = random_net()
    folder = scan_image_folder(square_folder)
    result = sweep(model, folder, LAYERS, SPEC, k=5, batch_size=7, workers=0)
    for name in LAYERS:
        expected = brute_force(model, folder, int(name), 5)
        topk = result.layers[name]
        for channel, entries in enumerate(expected):
            np.testing.assert_allclose(
                topk.values[channel].numpy(), [e[0] for e in entries], rtol=1e-5, atol=1e-6
            )
            live = [e for e in entries if e[0] > 1e-4]  # among near-zero ties the order is moot
            assert topk.images[channel, : len(live)].tolist() == [e[1] for e in live]
            assert topk.rows[channel, : len(live)].tolist() == [e[2] for e in live]
            assert topk.cols[channel, : len(live)].tolist() == [e[3] for e in live]
    assert result.image_count == 24


def test_mean_is_mean_of_per_image_maxima(square_folder):
    model = random_net()
    folder = scan_image_folder(square_folder)
    result = sweep(model, folder, ["4"], SPEC, k=3, batch_size=5, workers=0)
    expected = brute_force(model, folder, 4, 24)
    means = [np.mean([e[0] for e in entries]) for entries in expected]
    np.testing.assert_allclose(result.layers["4"].mean.numpy(), means, rtol=1e-5)


def test_sharded_sweep_merges_to_the_unsharded_result_exactly(square_folder):
    model = random_net()
    folder = scan_image_folder(square_folder)
    whole = sweep(model, folder, LAYERS, SPEC, k=6, batch_size=4, workers=0)
    shards = [
        sweep(model, folder, LAYERS, SPEC, k=6, batch_size=4, workers=0, indices=range(a, b))
        for a, b in [(0, 8), (8, 12), (12, 24)]
    ]
    merged = merge_sweeps(shards)
    for name in LAYERS:
        for attribute in ("values", "images", "rows", "cols"):
            assert torch.equal(
                getattr(whole.layers[name], attribute), getattr(merged.layers[name], attribute)
            ), (name, attribute)
        assert whole.layers[name].count == merged.layers[name].count == 24
        torch.testing.assert_close(whole.layers[name].mean, merged.layers[name].mean)


def test_ties_resolve_to_the_lower_image_index(tmp_path):
    from tests.support.images import write_square_folder

    root = write_square_folder(tmp_path / "same", per_class=2)
    # Copy one image over all others: every image then scores the same.
    files = sorted(root.rglob("*.png"))
    for other in files[1:]:
        other.write_bytes(files[0].read_bytes())
    folder = scan_image_folder(root)
    result = sweep(random_net(), folder, ["4"], SPEC, k=4, batch_size=3, workers=0)
    assert result.layers["4"].images[0].tolist() == [0, 1, 2, 3]


def test_unreadable_and_non_image_files_are_counted_not_fatal(square_folder):
    (square_folder / "red" / "broken.png").write_bytes(b"not a png")
    (square_folder / "README.txt").write_text("notes")
    folder = scan_image_folder(square_folder)
    assert folder.skipped == ("README.txt",)
    result = sweep(random_net(), folder, ["4"], SPEC, k=30, batch_size=8, workers=0)
    broken = [i for i, e in enumerate(folder.images) if e.path == "red/broken.png"]
    assert result.unreadable == broken
    assert result.image_count == 24
    trimmed = result.layers["4"].trimmed()
    assert trimmed.k == 24  # fewer readable images than K: only filled slots remain
    assert broken[0] not in trimmed.images.flatten().tolist()


def test_dead_neurons_are_flagged(square_folder):
    from tests.support.models import red_detector

    spec = InputSpec(size=32, mean=(0, 0, 0), std=(1, 1, 1))
    result = sweep(red_detector(), scan_image_folder(square_folder), ["1"], spec, k=3, workers=0)
    assert result.layers["1"].dead.tolist() == [False, False, True]


@pytest.mark.parametrize("workers", [2])
def test_data_loader_workers_give_the_same_result(square_folder, workers):
    model = random_net()
    folder = scan_image_folder(square_folder)
    inline = sweep(model, folder, ["4"], SPEC, k=4, batch_size=6, workers=0)
    parallel = sweep(model, folder, ["4"], SPEC, k=4, batch_size=6, workers=workers)
    assert torch.equal(inline.layers["4"].images, parallel.layers["4"].images)


def test_image_loaders_never_fork_a_cuda_process(square_folder):
    context = loader_start_method(torch.device("cuda:1"), 2)
    assert context is not None and context.get_start_method() == "forkserver"
    assert loader_start_method(torch.device("cuda"), 0) is None  # no loader processes at all
    assert loader_start_method(torch.device("cpu"), 2) is None  # forking is fine without CUDA
    # A forkserver child receives the dataset pickled: it must survive the trip intact.
    dataset = ImageTensors(scan_image_folder(square_folder), 32)
    copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(copy[5][0], dataset[5][0]) and copy[5][1:] == dataset[5][1:]
    # Loaders from the preloading forkserver (no GPU needed to start one) give the same batches.
    served = DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context=context)
    inline = DataLoader(dataset, batch_size=8)
    for (a, index_a, ok_a), (b, index_b, ok_b) in zip(served, inline, strict=True):
        assert torch.equal(a, b) and torch.equal(index_a, index_b) and torch.equal(ok_a, ok_b)


def test_a_sweep_result_survives_its_shard_file(square_folder):
    from analysis.safetensors_io import parse_safetensors, safetensors_bytes
    from analysis.sweep import SweepResult

    result = sweep(random_net(), scan_image_folder(square_folder), LAYERS, SPEC, k=4, workers=0)
    restored = SweepResult.from_tensors(*parse_safetensors(safetensors_bytes(*result.to_tensors())))
    assert restored.image_count == result.image_count and restored.unreadable == result.unreadable
    for name, topk in result.layers.items():
        again = restored.layers[name]
        assert again.count == topk.count
        for part in ("values", "images", "rows", "cols", "maxima_sum"):
            assert torch.equal(getattr(again, part), getattr(topk, part)), (name, part)


def test_loader_pixels_become_exactly_the_float_images_of_load_rgb(square_folder):
    from analysis.data import load_rgb

    folder = scan_image_folder(square_folder)
    dataset = ImageTensors(folder, (24, 40))
    batch = torch.stack([dataset[i][0] for i in range(3)])
    assert batch.dtype == torch.uint8 and batch.shape == (3, 24, 40, 3)
    images = model_pixels(batch)
    assert images.is_contiguous(memory_format=torch.channels_last)
    for i in range(3):
        expected = load_rgb(folder.root / folder.images[i].path, (24, 40))
        assert torch.equal(images[i].permute(1, 2, 0), torch.from_numpy(expected))


@pytest.mark.parametrize(
    ("cores", "device", "expected"),
    [
        (1, "cpu", 1),
        (2, "cpu", 2),
        (16, "cpu", 16),
        (2, "cuda", 2),
        (16, "cuda", 15),
        (96, "cuda", 32),
    ],
)
def test_loaders_default_to_one_per_usable_core(monkeypatch, cores, device, expected):
    """One per core the process may run on (not the machine's count: containers pin fewer); a
    GPU's feeding process keeps a core of its own once there are cores to spare."""
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    assert loader_workers(torch.device(device)) == expected
