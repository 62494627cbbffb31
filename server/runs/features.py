"""The Neuron Feature stage's files: a display PNG and a top-patch sprite for every live neuron
of a layer.

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
from server.storage.artifacts import ArtifactStore

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


def compute_neuron_features(
    layers: list[tuple[LayerInfo, LayerTopK]],
    decoded: DecodedImages,
    store: ArtifactStore,
    device: str = "cpu",
    advance: Callable[[int], None] | None = None,
) -> dict[str, dict[int, StoredNeuron]]:
    """For every live channel of each (layer, top-K): the NF's stretched display PNG of the
    whole window (computed over the layer's :func:`nf_box`) and the top-patch sprite (JPEG);
    ``advance(n)`` is told how many neurons are finished in all. Every file is written when
    this returns."""
    work = [_Layer(layer, topk, decoded, store) for layer, topk in layers]
    processes = feature_processes(device, sum(len(w.live) for w in work))
    if processes > 1:
        keys = _in_processes(work, processes, advance)
    else:
        keys = _beside_threads(work, device, advance)
    stored: dict[str, dict[int, StoredNeuron]] = {}
    for w in work:
        name = w.layer.name
        stored[name] = {channel: StoredNeuron(channel) for channel in range(w.topk.channels)}
        for channel, (nf_key, sprite_key) in keys[name].items():
            stored[name][channel].nf_key, stored[name][channel].sprite_key = nf_key, sprite_key
    return stored


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

    def save(self, feature: NeuronFeature) -> tuple[str, str]:
        """Draw, encode and store one NF's display PNG and sprite; their keys."""
        nf_key = self.store.put_png(display_image(feature.mean, feature.reach, feature.window))
        return nf_key, self.store.put_jpeg(sprite(feature.tiles))


Keys = dict[str, dict[int, tuple[str, str]]]  # layer → channel → (NF PNG, sprite JPEG)


def _in_processes(
    work: list[_Layer], processes: int, advance: Callable[[int], None] | None
) -> Keys:
    """Forked children, one per core, each taking a share of every layer's live channels
    (they inherit the decoded images without copying them: one fork per stage, as forking a
    large process per layer cost a second of page tables); they report keys as they go."""
    context = multiprocessing.get_context("fork")
    children: list[tuple[multiprocessing.Process, Connection]] = []
    keys: Keys = {w.layer.name: {} for w in work}
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
    return keys


def _child(
    work: list[_Layer], share: int, shares: int, budget: int, sending: Connection, parent: int
) -> None:
    """A forked process's share of each layer: one thread (its siblings have the other
    cores), keys sent in small batches, a failure sent as its last message."""
    try:
        _die_with(parent)
        torch.set_num_threads(1)
        for w in work:
            channels = np.array_split(w.live, shares)[share]
            batch: dict[int, tuple[str, str]] = {}
            for channel, feature in w.features(channels, "cpu", budget):
                batch[channel] = w.save(feature)
                if len(batch) >= REPORT_EVERY:
                    sending.send((w.layer.name, batch))
                    batch = {}
            sending.send((w.layer.name, batch))
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


def _beside_threads(work: list[_Layer], device: str, advance: Callable[[int], None] | None) -> Keys:
    """NFs accumulated on ``device`` while a thread per core writes the finished ones (the
    encoders release the GIL for part of their work; a GPU's NFs come faster than two threads
    write them)."""
    keys: Keys = {w.layer.name: {} for w in work}
    threads = min(usable_cores(), MAX_STORE_THREADS)
    finished = 0

    def save(w: _Layer, channel: int, feature: NeuronFeature) -> None:
        keys[w.layer.name][channel] = w.save(feature)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[None]] = deque()
        for w in work:
            for channel, feature in w.features(w.live, device, MEMORY_BYTES):
                pending.append(pool.submit(save, w, channel, feature))
                finished += 1
                if advance:
                    advance(finished)
                if len(pending) > 4 * threads:  # bounded: a few NFs in flight, not a layer
                    pending.popleft().result()
        for done in pending:
            done.result()  # re-raises a failed write here
    return keys
