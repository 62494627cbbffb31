"""``neuronscope demo``: make the stimulus dataset, train the demo CNN, analyse it, report.

Each stage is cached under ``$NEURONSCOPE_DATA_DIR/demo`` and published atomically, so a second
run skips straight to the (also reused) analysis.
"""

from __future__ import annotations

import argparse
import io
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.cli.common import open_database
from server.cli.progress import TerminalProgress

DATASET_VERSION = "stimuli-v1"
PER_CLASS = 400
# Half the default K (docs/algorithms.md §1): the selectivity indexes re-read every top patch
# 30 times, and on two CPU cores K = 100 would add some ten minutes to the demo.
DEMO_TOP_K = 50
# Feature visualisations of all 360 neurons and 10 classes must take under 3 minutes on two CPU
# cores: the demo renders its 64 px images in fewer steps than docs/algorithms.md §7's 512.
DEMO_FEATUREVIZ = {"steps": 128, "size": 64}


def add_commands(commands: Any) -> None:
    demo = commands.add_parser("demo", help="generate stimuli, train a small CNN, analyse it")
    demo.add_argument("--device", help="torch device (default $NEURONSCOPE_DEVICE or cpu)")
    demo.add_argument("--per-class", type=int, default=PER_CLASS, help="stimuli per class")
    demo.add_argument("--top-k", type=int, default=DEMO_TOP_K, help="top images per neuron")
    demo.add_argument(
        "--fv-steps", type=int, default=DEMO_FEATUREVIZ["steps"], help="feature vis. steps"
    )
    demo.add_argument(
        "--fv-size", type=int, default=DEMO_FEATUREVIZ["size"], help="feature vis. size (px)"
    )
    demo.add_argument("--no-serve", action="store_true", help="stop after the analysis")
    demo.add_argument("--port", type=int, default=8000, help="dashboard port (127.0.0.1)")
    demo.set_defaults(handler=run_demo)


def ensure_demo_dataset(demo_dir: Path, per_class: int) -> Path:
    """The stimulus image folder, generated once (seeded) and renamed into place when complete."""
    from analysis.demo.stimuli import generate, write_image_folder

    root = demo_dir / f"{DATASET_VERSION}-{per_class}"
    if root.is_dir():
        return root
    print(f"generating {per_class} stimuli per class into {root} ...")
    images, labels = generate(per_class, seed=0)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_image_folder(images, labels, partial)
    partial.replace(root)
    return root


def ensure_demo_model(demo_dir: Path, dataset_root: Path, per_class: int) -> Path:
    """The trained demo CNN's safetensors file, trained once on the generated stimuli."""
    import numpy as np
    from PIL import Image

    from analysis.demo.stimuli import CLASSES
    from analysis.demo.train import train_demo_cnn, training_epochs

    weights = demo_dir / f"demo_cnn-{DATASET_VERSION}-{per_class}.safetensors"
    if weights.is_file():
        return weights
    paths = sorted(dataset_root.glob("*/*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    labels = np.array([CLASSES.index(p.parent.name) for p in paths])
    print(f"training the demo CNN on {len(paths)} images (CPU, a few minutes, once) ...")
    progress = TerminalProgress()
    epochs = training_epochs(len(paths))
    progress.start("training", epochs, "epochs")

    def on_epoch(epoch: int, _total: int, accuracy: float) -> None:
        progress.update(epoch, note=f"val_acc={accuracy:.3f}")

    report = train_demo_cnn(images, labels, weights, epochs=epochs, on_epoch=on_epoch)
    progress.finish()
    print(
        f"validation accuracy {report.val_accuracy:.1%} on {report.val_images} held-out images "
        f"after {report.epochs} epochs ({report.seconds:.0f} s); saved {weights}"
    )
    return weights


def write_nf_mosaics(database: Any, store: Any, run_id: int, out_dir: Path) -> list[Path]:
    """One PNG per layer with every neuron's NF (display-stretched), in channel order."""
    import numpy as np
    from PIL import Image
    from sqlalchemy import select

    from analysis.neuron_feature import GREY, sprite
    from server.storage.packs import artifact_bytes
    from server.storage.schema import Layer, Neuron

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with database.session() as session:
        for layer in session.scalars(
            select(Layer).where(Layer.run_id == run_id).order_by(Layer.position)
        ):
            neurons = session.scalars(
                select(Neuron).where(Neuron.layer_id == layer.id).order_by(Neuron.channel)
            ).all()
            scale = max(1, 48 // max(layer.rf_size))
            tiles = []
            for neuron in neurons:
                if neuron.nf_key is None:
                    tile = np.full((*layer.rf_size, 3), GREY, dtype=np.float32)
                else:
                    picture = Image.open(io.BytesIO(artifact_bytes(session, store, neuron.nf_key)))
                    tile = np.asarray(picture, dtype=np.float32) / 255
                tiles.append(tile.repeat(scale, axis=0).repeat(scale, axis=1))
            path = out_dir / f"nf-run{run_id}-{layer.name}.png"
            Image.fromarray(sprite(tiles, columns=16, gap=2)).save(path)
            written.append(path)
    return written


DEMO_STIMULUS_CLASS = "ring"
STIMULUS_CANDIDATES = 30


def decompose_demo_stimulus(
    session: Any, store: Any, settings: Any, run_id: int, loaded: Any, device: str
) -> int:
    """One stimulus decomposed at every layer (stored once), so the dashboard shows one."""
    from server.cli.decompose import decompose_here
    from server.runs.read import get_run

    run = get_run(session, run_id)
    path = demo_stimulus(session, run, loaded)
    return decompose_here(session, store, run, path, settings, device).id


def demo_stimulus(session: Any, run: Any, loaded: Any) -> Path:
    """The stimulus the dashboard shows decomposed: of the first ring stimuli (in name order),
    the first whose strongest neuron at the deepest layer is a ring neuron (its top images are
    mostly rings), so the deepest composite shows what the network saw. Some rings are read
    most strongly by a neuron of rings and bars, whose NF is a blur of both; an undertrained
    network may have no ring neuron at all, and then the first ring is shown."""
    import torch

    from analysis.data import load_rgb
    from analysis.decomposition.image import decompose
    from server.runs.decoded import run_decoding
    from server.runs.read import neuron_table
    from server.runs.stored import layer_neurons, stored_field

    candidates = sorted((Path(run.dataset.root) / DEMO_STIMULUS_CLASS).glob("*.png"))
    candidates = candidates[:STIMULUS_CANDIDATES]
    if not candidates:  # a dataset generated otherwise: its first image
        return sorted(Path(run.dataset.root).glob("*/*.png"))[0]
    deepest = run.layers[-1]
    top_class = {row["channel"]: row["top_class"] for row in neuron_table(session, deepest)}
    maxima = torch.tensor([n.max_activation for n in layer_neurons(session, deepest)])
    request = {deepest.name: (stored_field(deepest), maxima)}
    policy, draft = run_decoding(run)
    model = loaded.module.eval()
    for path in candidates:
        pixels = load_rgb(path, loaded.input.size, policy, loaded.input.grey, draft)
        image = loaded.input.normalise(torch.from_numpy(pixels).permute(2, 0, 1)[None])
        placements = decompose(model, image, request)[deepest.name].placements
        if placements and top_class.get(placements[0].channel) == DEMO_STIMULUS_CLASS:
            return path
    return candidates[0]


def write_featureviz_figure(
    database: Any, store: Any, run_id: int, out: Path, per_layer: int = 6
) -> Path:
    """One row per layer: NF beside feature visualisation for the neurons whose visualisation
    drives them hardest relative to random images (the README's picture)."""
    import numpy as np
    from PIL import Image
    from sqlalchemy import select

    from analysis.neuron_feature import sprite
    from server.storage.packs import artifact_bytes
    from server.storage.schema import FeatureViz, Layer, Neuron

    tile = 64
    tiles = []
    with database.session() as session:
        for layer in session.scalars(
            select(Layer).where(Layer.run_id == run_id).order_by(Layer.position)
        ):
            found = session.execute(
                select(Neuron.nf_key, FeatureViz.image_key, FeatureViz.activation)
                .join(FeatureViz, FeatureViz.unit == Neuron.channel)
                .where(
                    Neuron.layer_id == layer.id,
                    Neuron.nf_key.is_not(None),
                    FeatureViz.run_id == run_id,
                    FeatureViz.target == layer.name,
                    FeatureViz.variant == 0,
                )
                .order_by((FeatureViz.activation - FeatureViz.random_activation).desc())
                .limit(per_layer)
            ).all()
            for nf_key, image_key, _activation in found:
                for key in (nf_key, image_key):
                    image = Image.open(io.BytesIO(artifact_bytes(session, store, key)))
                    image = image.convert("RGB").resize((tile, tile))
                    tiles.append(np.asarray(image, dtype=np.float32) / 255)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sprite(tiles, columns=2 * per_layer, gap=2)).save(out)
    return out


def run_demo(args: argparse.Namespace) -> int:
    settings, database, store = open_database()
    device = args.device or settings.device
    if args.no_serve:
        analyse_demo(args, settings, database, store, device)
        return 0
    from server.cli.serve import serve_dashboard

    log = settings.data_dir / "worker.log"
    # The worker starts before this process can initialise CUDA: such a process must not fork.
    with background_worker(device, log):
        run_id = analyse_demo(args, settings, database, store, device)
        print(f"\na worker runs what you start from the browser (/runs/new); its log: {log}")
        print(f"open http://127.0.0.1:{args.port}/runs/{run_id}")
        serve_dashboard("127.0.0.1", args.port)
    return 0


def analyse_demo(
    args: argparse.Namespace, settings: Any, database: Any, store: Any, device: str
) -> int:
    """Stimuli, the trained CNN, its analysis (each cached), the report; returns the run id."""
    from analysis.data import scan_image_folder
    from analysis.demo.model import DEMO_SPEC
    from analysis.models import load_model
    from server.cli.analyze import print_run_report
    from server.runs.read import get_run, run_summary
    from server.runs.stages import AnalysisSettings, analyze_folder

    started = time.perf_counter()
    clock = StageClock()
    settings.demo_dir.mkdir(parents=True, exist_ok=True)
    dataset_root = ensure_demo_dataset(settings.demo_dir, args.per_class)
    clock.lap("stimuli")
    weights = ensure_demo_model(settings.demo_dir, dataset_root, args.per_class)
    clock.lap("training")
    loaded = load_model(DEMO_SPEC, weights=weights)
    folder = scan_image_folder(dataset_root)
    with database.session() as session:
        outcome = analyze_folder(
            session,
            store,
            loaded,
            folder,
            None,
            top_k=args.top_k,
            settings=AnalysisSettings(device=device),
            progress=TerminalProgress(),
        )
        summary = run_summary(get_run(session, outcome.run_id))
    summary["reused"] = outcome.reused
    summary["seconds"] = round(time.perf_counter() - started, 2)
    clock.lap("analysis")
    accuracy = loaded.metadata.get("neuronscope.val_accuracy")
    if accuracy:
        print(f"\ndemo CNN validation accuracy: {float(accuracy):.1%}")
    print_run_report(summary, settings.artifact_dir)
    with database.session() as session:
        options = {"steps": args.fv_steps, "size": args.fv_size}
        render_demo_featureviz(session, store, outcome.run_id, loaded, options, device)
    clock.lap("feature visualisations")
    mosaics = write_nf_mosaics(database, store, outcome.run_id, settings.demo_dir / "mosaics")
    with database.session() as session:
        decomposition = decompose_demo_stimulus(
            session, store, settings, outcome.run_id, loaded, device
        )
    clock.lap("decomposition and figures")
    print(f"a stimulus decomposed at every layer: /decompositions/{decomposition}")
    figure = write_featureviz_figure(
        database, store, outcome.run_id, mosaics[0].parent / f"featureviz-run{outcome.run_id}.png"
    )
    print(f"NF beside feature visualisation, a row per layer: {figure}")
    print(f"Per-layer NF mosaics: {mosaics[0].parent}/")
    for path in mosaics:
        print(f"  {path.name}")
    print(clock.report())
    return outcome.run_id


class StageClock:
    """The demo's own timing report: each stage's seconds (near 0 when cached), in all, with
    the machine's cores and the date, so the README's times can be taken from it."""

    def __init__(self) -> None:
        self.started = self._mark = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = now - self._mark
        self._mark = now

    def report(self) -> str:
        from analysis.machine import usable_cores

        laps = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in self.stages.items())
        total = time.perf_counter() - self.started
        return (
            f"demo ready in {total:.0f} s ({laps}) on {usable_cores()} CPU cores, "
            f"{time.strftime('%Y-%m-%d')}"
        )


def render_demo_featureviz(
    session: Any, store: Any, run_id: int, loaded: Any, options: dict[str, Any], device: str
) -> None:
    """A feature visualisation of every neuron and every class (stored once, reused after)."""
    from analysis.featureviz.targets import Target
    from server.cli.analyze import render_run_featureviz
    from server.featureviz.render import render_and_store, render_settings
    from server.runs.read import get_run

    started = time.perf_counter()
    render_run_featureviz(session, store, run_id, loaded, options, device)
    render_and_store(
        session,
        get_run(session, run_id),
        loaded,
        Target(layer=None),
        list(range(loaded.module.classifier.out_features)),
        render_settings(options),
        store,
        device,
        TerminalProgress(),
    )
    print(f"feature visualisations: {time.perf_counter() - started:.0f} s")


@contextmanager
def background_worker(device: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``neuronscope worker`` in a child process (a fresh interpreter) for as long as the block
    runs; stopping it puts an unfinished job back on the queue.

    SIGTERM (``kill``, ``docker stop``) ends the block as Ctrl-C does, so the worker stops
    too: by default the signal killed this process at once (uvicorn, after its own graceful
    shutdown, raises it again) and left the worker running on its own."""
    with log.open("a") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", "worker", "--device", device],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
