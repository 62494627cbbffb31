"""The Neuron Feature stage's files: a display PNG and a top-patch sprite for every live neuron
of a layer, written into pack files (:mod:`server.storage.packs`: a file a picture cost more to
create than the picture cost to draw).

The float NF at full resolution is not stored here (it was 96 % of a whole network's disk and
most of this stage's time): :mod:`server.runs.nf_arrays` computes it from the top-K when it is
first asked for.

On a CPU a layer's live channels are shared among forked processes, one per core, each of which
accumulates its NFs and draws, encodes and writes their files. Threads could not do this: the
drawing and the writing hold the GIL for much of their work, and on ResNet-50's 15,323 live
neurons (26 photos, K = 5, two cores) the threaded stage took 21 s where the processes take
about half that. On a GPU (which a forked child may not touch) the NFs accumulate on the device
and a thread per core writes their files meanwhile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import numpy as np
import torch

from analysis.layers import LayerInfo
from analysis.machine import usable_cores
from analysis.models import InputSpec
from analysis.neuron_feature import NeuronFeature, display_image, neuron_features, sprite
from analysis.sweep import LayerTopK
from server.runs.decoded import DecodedImages
from server.runs.write import StoredNeuron
from server.storage.artifacts import ArtifactStore, encode_jpeg
from server.storage.packs import PackBuffer, PackedEntry
from server.storage.png import encode_png

MAX_STORE_THREADS = 16  # threads encoding and writing a layer's NF files beside a GPU
MAX_PROCESSES = 16  # processes sharing a layer's NFs on a CPU
MIN_CHANNELS_A_PROCESS = 32  # below this a fork costs more than it saves
REPORT_EVERY = 16  # neurons a child finishes between two messages to the parent
PR_SET_PDEATHSIG = 1  # prctl option, from linux/prctl.h
MEMORY_BYTES = 2 << 30  # accumulators of a chunk of channels, shared among the processes


def nf_box(layer: LayerInfo, spec: InputSpec) -> tuple[int, int, int, int]:
    """The part of ``layer``'s window that its NF arrays hold: its reach on the model's input
    (outside it an NF is grey by definition)."""
    return layer.receptive_field.reach(spec.size, (layer.height, layer.width))


@dataclass
class FeatureFiles:
    """What the stage stored: each layer's neurons with their pictures' keys, and where those
    pictures lie in the pack files (to be recorded with the neurons)."""

    neurons: dict[str, dict[int, StoredNeuron]]
    packed: list[PackedEntry]


def compute_neuron_features(
    layers: list[tuple[LayerInfo, LayerTopK]],
    decoded: DecodedImages,
    store: ArtifactStore,
    device: str = "cpu",
    advance: Callable[[int], None] | None = None,
) -> FeatureFiles:
    """For every live channel of each (layer, top-K): the NF's stretched display PNG of the
    whole window (computed over the layer's :func:`nf_box`) and the top-patch sprite (JPEG);
    ``advance(n)`` is told how many neurons are finished in all. Every pack file is written
    when this returns."""
    work = [_Layer(layer, topk, decoded, store) for layer, topk in layers]
    processes = feature_processes(device, sum(len(w.live) for w in work))
    if processes > 1:
        keys, packed = _in_processes(work, processes, advance)
    else:
        keys, packed = _beside_threads(work, device, advance)
    stored: dict[str, dict[int, StoredNeuron]] = {}
    for w in work:
        name = w.layer.name
        stored[name] = {channel: StoredNeuron(channel) for channel in range(w.topk.channels)}
        for channel, (nf_key, sprite_key) in keys[name].items():
            stored[name][channel].nf_key, stored[name][channel].sprite_key = nf_key, sprite_key
    return FeatureFiles(stored, packed)


def feature_processes(device: str, neurons: int) -> int:
    """How many processes share ``neurons`` live neurons' NFs: one per usable core on a CPU
    that can fork, with at least MIN_CHANNELS_A_PROCESS each; 1 (this one) otherwise."""
    if torch.device(device).type != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(usable_cores(), MAX_PROCESSES, neurons // MIN_CHANNELS_A_PROCESS))


@dataclass(frozen=True)
class _Layer:
    """What computing a layer's NFs needs, as its processes inherit it."""

    layer: LayerInfo
    topk: LayerTopK
    decoded: DecodedImages
    store: ArtifactStore

    @property
    def live(self) -> np.ndarray:
        return np.flatnonzero(~self.topk.dead.numpy())

    def features(
        self, channels: np.ndarray, device: str, budget: int
    ) -> Iterator[tuple[int, NeuronFeature]]:
        """The NFs of ``channels`` (others are skipped as if dead)."""
        topk = self.topk
        skipped = np.ones(topk.channels, dtype=bool)
        skipped[channels] = False
        return neuron_features(
            topk.values.numpy(),
            topk.images.numpy(),
            topk.rows.numpy(),
            topk.cols.numpy(),
            self.layer.receptive_field,
            self.decoded.pixels,
            skipped | topk.dead.numpy(),
            device=device,
            resident_images=self.decoded.capacity,
            reach=nf_box(self.layer, self.decoded.input_spec),
            memory_budget=budget,
        )

    def encode(self, feature: NeuronFeature) -> tuple[bytes, bytes]:
        """Draw and encode one NF's display PNG and sprite JPEG."""
        display = display_image(feature.part, feature.drawn, feature.window)
        return encode_png(display), encode_jpeg(sprite(feature.tiles))


Keys = dict[str, dict[int, tuple[str, str]]]  # layer → channel → (NF PNG, sprite JPEG)


def _packed(pack: PackBuffer, pictures: tuple[bytes, bytes]) -> tuple[str, str]:
    """Add a neuron's two pictures to ``pack``; their keys."""
    return pack.add(pictures[0], "png"), pack.add(pictures[1], "jpg")


def _in_processes(
    work: list[_Layer], processes: int, advance: Callable[[int], None] | None
) -> tuple[Keys, list[PackedEntry]]:
    """Forked children, one per core, each taking a share of every layer's live channels
    (they inherit the decoded images without copying them: one fork per stage, as forking a
    large process per layer cost a second of page tables); they report keys as they go, and
    their packs' entries as each pack is written."""
    context = multiprocessing.get_context("fork")
    children: list[tuple[multiprocessing.Process, Connection]] = []
    keys: Keys = {w.layer.name: {} for w in work}
    packed: list[PackedEntry] = []
    finished = 0
    try:
        for share in range(processes):
            receiving, sending = context.Pipe(duplex=False)
            arguments = (work, share, processes, MEMORY_BYTES // processes, sending, os.getpid())
            child = context.Process(target=_child, args=arguments)
            child.start()
            sending.close()
            children.append((child, receiving))
        open_ends = {receiving: child for child, receiving in children}
        while open_ends:
            for end in wait(list(open_ends)):
                try:
                    message = end.recv()
                except EOFError:
                    child = open_ends.pop(end)
                    child.join()
                    if child.exitcode != 0:
                        raise RuntimeError(
                            f"a Neuron Feature process stopped (exit code {child.exitcode})"
                        ) from None
                    continue
                if isinstance(message, str):
                    raise RuntimeError(f"Neuron Features: {message}")
                if isinstance(message, list):
                    packed.extend(message)
                    continue
                name, batch = message
                keys[name].update(batch)
                finished += len(batch)
                if advance:
                    advance(finished)
    finally:
        for child, receiving in children:
            if child.is_alive():
                child.terminate()
            child.join()
            receiving.close()
    return keys, packed


def _child(
    work: list[_Layer], share: int, shares: int, budget: int, sending: Connection, parent: int
) -> None:
    """A forked process's share of each layer: one thread (its siblings have the other
    cores), keys sent in small batches, each pack's entries once it is written, a failure sent
    as its last message."""
    try:
        _die_with(parent)
        torch.set_num_threads(1)
        for w in work:
            channels = np.array_split(w.live, shares)[share]
            pack = PackBuffer(w.store)
            batch: dict[int, tuple[str, str]] = {}
            for channel, feature in w.features(channels, "cpu", budget):
                batch[channel] = _packed(pack, w.encode(feature))
                if len(batch) >= REPORT_EVERY:
                    sending.send((w.layer.name, batch))
                    batch = {}
                if pack.full:
                    sending.send(pack.write())
            sending.send((w.layer.name, batch))
            sending.send(pack.write())
    except BaseException:
        sending.send(traceback.format_exc().strip().splitlines()[-1])
        sending.close()
        os._exit(1)
    sending.close()


def _die_with(parent: int) -> None:
    """Be killed when ``parent`` dies (Linux): a worker killed mid-stage leaves no process
    writing on for nobody."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that was set
        os._exit(1)


def _beside_threads(
    work: list[_Layer], device: str, advance: Callable[[int], None] | None
) -> tuple[Keys, list[PackedEntry]]:
    """NFs accumulated on ``device`` while a thread per core draws and encodes the finished
    ones (the encoders release the GIL for part of their work; a GPU's NFs come faster than
    two threads encode them); this thread packs what they encoded, in order."""
    keys: Keys = {w.layer.name: {} for w in work}
    packed: list[PackedEntry] = []
    threads = min(usable_cores(), MAX_STORE_THREADS)
    finished = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for w in work:
            pack = PackBuffer(w.store)
            pending: deque[tuple[int, Future[tuple[bytes, bytes]]]] = deque()
            for channel, feature in w.features(w.live, device, MEMORY_BYTES):
                pending.append((channel, pool.submit(w.encode, feature)))
                finished += 1
                if advance:
                    advance(finished)
                if len(pending) > 4 * threads:  # bounded: a few NFs in flight, not a layer
                    _pack_oldest(pending, pack, keys[w.layer.name], packed)
            while pending:
                _pack_oldest(pending, pack, keys[w.layer.name], packed)
            packed.extend(pack.write())
    return keys, packed


def _pack_oldest(
    pending: deque[tuple[int, Future[tuple[bytes, bytes]]]],
    pack: PackBuffer,
    keys: dict[int, tuple[str, str]],
    packed: list[PackedEntry],
) -> None:
    """Pack the oldest encoding in flight (re-raising its failure here), writing the pack
    when it is full."""
    channel, encoded = pending.popleft()
    keys[channel] = _packed(pack, encoded.result())
    if pack.full:
        packed.extend(pack.write())
