"""``neuronscope decompose`` and ``neuronscope compose`` (docs/algorithms.md §6), computed in this
process and stored like the dashboard's, so the browser shows them too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from server.cli.common import open_database
from server.cli.output import print_json, print_table
from server.cli.progress import TerminalProgress


def add_commands(commands: Any) -> None:
    decompose = commands.add_parser(
        "decompose", help="describe an image by the Neuron Features of the neurons it drives"
    )
    decompose.add_argument("run", type=int)
    decompose.add_argument("image", help="an image file")
    decompose.add_argument("--layer", help="show only this layer (all are computed)")
    decompose.add_argument(
        "--max-overlap", type=float, default=0.0, help="allowed window overlap, 0..1 (default 0)"
    )
    decompose.add_argument("--device", help="torch device (default $NEURONSCOPE_DEVICE or cpu)")
    decompose.add_argument("--json", action="store_true")
    decompose.set_defaults(handler=run_decompose)

    compose = commands.add_parser(
        "compose", help="describe a neuron by the neurons of a shallower layer"
    )
    compose.add_argument("run", type=int)
    compose.add_argument("layer")
    compose.add_argument("channel", type=int)
    compose.add_argument("--source", help="the shallower layer (default: the one before)")
    compose.add_argument("--mode", choices=["activation", "relevance"], default="activation")
    compose.add_argument("--depth", type=int, default=3, help="relevance: layers down the tree")
    compose.add_argument("--device", help="torch device (default $NEURONSCOPE_DEVICE or cpu)")
    compose.add_argument("--json", action="store_true")
    compose.set_defaults(handler=run_compose)


def run_decompose(args: argparse.Namespace) -> int:
    from server.decompositions.composition import DecompositionError
    from server.decompositions.read import decomposition_record
    from server.runs.read import get_run

    path = Path(args.image).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if not 0.0 <= args.max_overlap <= 1.0:
        raise DecompositionError("--max-overlap is a fraction from 0 to 1")
    settings, database, store = open_database()
    with database.session() as session:
        run = get_run(session, args.run)
        if args.layer and args.layer not in [layer.name for layer in run.layers]:
            raise DecompositionError(f"run {run.id} has no layer {args.layer!r}")
        decomposition = decompose_here(
            session,
            store,
            run,
            path,
            settings,
            args.device or settings.device,
            args.max_overlap,
            TerminalProgress(enabled=not args.json),
        )
        record = decomposition_record(session, decomposition, args.layer)
    if args.json:
        print_json(record)
        return 0
    for name, layer in record["layers"].items():
        print(f"\n{name}: {len(layer['neurons'])} neurons ({record['width']}×{record['height']})")
        print_table(
            ["channel", "normalised", "value", "window r0,r1,c0,c1"],
            [
                [n["channel"], f"{n['normalised']:.3f}", f"{n['value']:.4g}", n["window"]]
                for n in layer["neurons"][:20]
            ],
        )
    print(f"\ndecomposition {record['id']}: http://127.0.0.1:8000/decompositions/{record['id']}")
    return 0


def decompose_here(
    session: Any,
    store: Any,
    run: Any,
    path: Path,
    settings: Any,
    device: str,
    max_overlap: float = 0.0,
    progress: Any = None,
) -> Any:
    """Store the image file as an upload and decompose it in this process (once: a stored
    decomposition of the same bytes is returned as it is). Commits."""
    from server.decompositions.image import decompose_image
    from server.jobs.planning import plan_decomposition
    from server.runs.inputs import ModelCache
    from server.storage.uploads import UploadLimits, store_upload

    limits = UploadLimits(settings.max_upload_bytes, settings.max_upload_pixels)
    upload = store_upload(session, store, path.read_bytes(), path.name, limits)
    decomposition, job, _ready = plan_decomposition(
        session, run, f"upload:{upload.sha256}", upload.id, None, {"max_overlap": max_overlap}
    )
    if decomposition.result is None:
        loaded, _available = ModelCache().load(run.model)
        if progress is not None:
            progress.start("decomposing", 1)
        decomposition.result = decompose_image(
            session, run, loaded, store.path(upload.image_key), store, device, max_overlap
        )
        if progress is not None:
            progress.finish()
        if job is not None:  # the work is done here; no worker needs to repeat it
            job.status, job.progress, job.message = "done", 1.0, "computed in-process"
    session.commit()
    return decomposition


def run_compose(args: argparse.Namespace) -> int:
    from server.decompositions.composition import (
        compose_neuron,
        request_depth,
        shallower_layers,
        store_composition,
    )
    from server.decompositions.read import composition_record
    from server.runs.inputs import ModelCache, open_run_inputs
    from server.runs.read import get_run

    settings, database, store = open_database()
    with database.session() as session:
        run = get_run(session, args.run)
        below = shallower_layers(run, args.layer)
        request = {
            "layer": args.layer,
            "channel": args.channel,
            "source": args.source or (below[0] if below else ""),
            "mode": args.mode,
            "depth": args.depth,
        }
        request["depth"] = request_depth(request)
        inputs = open_run_inputs(run, ModelCache())
        result = compose_neuron(
            session,
            run,
            inputs.loaded,
            inputs.folder,
            request,
            store,
            args.device or settings.device,
            TerminalProgress(enabled=not args.json),
        )
        record = composition_record(run.id, store_composition(session, run.id, request, result))
        session.commit()
    if args.json:
        print_json(record)
        return 0
    if record["mode"] == "activation":
        print(f"{args.layer} #{args.channel} is composed of ({record['source']}):")
        print_table(
            ["channel", "weight", "window in its NF"],
            [[n["channel"], f"{n['weight']:.3f}", n["window"]] for n in record["neurons"]],
        )
    else:
        _print_tree(record["tree"], 0)
    return 0


def _print_tree(node: dict[str, Any], level: int) -> None:
    print(f"{'  ' * level}{node['layer']} #{node['channel']}  relevance {node['relevance']:.3f}")
    for child in node["children"]:
        _print_tree(child, level + 1)
