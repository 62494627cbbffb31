"""``neuronscope visualize`` and ``neuronscope dream``: feature visualisations of a run's model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from server.cli.common import open_database, parse_units
from server.cli.output import duration, print_json, print_table
from server.cli.progress import TerminalProgress


def add_render_options(parser: argparse.ArgumentParser) -> None:
    """Options that change the images (the defaults are docs/algorithms.md §7's)."""
    parser.add_argument("--steps", type=int, help="optimisation steps (default 512)")
    parser.add_argument("--size", type=int, help="image size in pixels (default 128)")
    parser.add_argument(
        "--diversity", type=int, help="N ≥ 2: N images per unit pushed apart (default 1 image)"
    )
    parser.add_argument(
        "--method", choices=["gradient", "xdream"], help="gradient ascent or genetic search"
    )
    parser.add_argument("--lr", type=float, help="Adam's learning rate (default 0.05)")
    parser.add_argument("--decay", type=float, help="Fourier 1/f^decay scaling (default 1)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument(
        "--view-size", type=int, help="size the network sees the images at (default: their own)"
    )


def render_options(args: argparse.Namespace) -> dict[str, Any]:
    """The given render options as job parameters (left out: the defaults apply)."""
    names = ("steps", "size", "diversity", "method", "lr", "decay", "seed", "view_size")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def add_commands(commands: Any) -> None:
    visualize = commands.add_parser(
        "visualize", help="render images that excite a run's neurons (or classes)"
    )
    visualize.add_argument("run", type=int)
    visualize.add_argument("layer", nargs="?", help="a layer of the run's model")
    visualize.add_argument("--channels", help="e.g. 0-63,70 (default: every channel)")
    visualize.add_argument("--classes", help="class logits instead of a layer, e.g. 0-9")
    visualize.add_argument("--output", type=int, help="which output holds the logits (tuples)")
    add_render_options(visualize)
    visualize.add_argument("--device", help="torch device (default $NEURONSCOPE_DEVICE or cpu)")
    visualize.add_argument("--batch-size", type=int, help="images per batch (default: by device)")
    visualize.add_argument("--queue", action="store_true", help="queue a job for a worker")
    visualize.add_argument("--wait", action="store_true", help="with --queue: show its progress")
    visualize.add_argument("--json", action="store_true")
    visualize.set_defaults(handler=run_featureviz)

    dream = commands.add_parser("dream", help="DeepDream an image file at a layer of a run's model")
    dream.add_argument("run", type=int)
    dream.add_argument("image", help="an image file")
    dream.add_argument("--layer", required=True)
    dream.add_argument("--octaves", type=int, default=4, help="scales, smallest first (default 4)")
    dream.add_argument("--steps", type=int, default=32, help="steps per octave (default 32)")
    dream.add_argument("--max-side", type=int, default=512, help="shrink larger images to this")
    dream.add_argument("--out", default="dream.png", help="where to write the PNG")
    dream.add_argument("--device", help="torch device (default $NEURONSCOPE_DEVICE or cpu)")
    dream.add_argument("--json", action="store_true")
    dream.set_defaults(handler=run_dream)


def _target(args: argparse.Namespace) -> tuple[dict[str, Any], list[int] | None]:
    from server.featureviz.render import FeatureVizError

    if args.classes is not None:
        if args.layer or args.channels:
            raise FeatureVizError("give either a layer (and --channels) or --classes")
        return {"layer": None, "output": args.output}, parse_units(args.classes)
    if not args.layer:
        raise FeatureVizError("give a layer of the run (or --classes for class logits)")
    units = parse_units(args.channels) if args.channels else None
    return {"layer": args.layer, "output": None}, units


def run_featureviz(args: argparse.Namespace) -> int:
    from server.runs.read import get_run

    target, units = _target(args)
    options = render_options(args)
    settings, database, store = open_database()
    if args.queue:
        return _queue(args, settings, database, target, units, options)

    from analysis.featureviz.targets import Target
    from analysis.featureviz.units import estimate_seconds
    from server.featureviz.render import check_units, render_and_store, render_settings, unit_count
    from server.runs.inputs import ModelCache

    started = time.perf_counter()
    device = args.device or settings.device
    render = render_settings(options)
    with database.session() as session:
        run = get_run(session, args.run)
        loaded, available = ModelCache().load(run.model)
        loaded.module.to(device)
        chosen = Target(layer=target["layer"], output=target["output"])
        count = unit_count(loaded, chosen, available)
        units = units or list(range(count))
        check_units(units, count, chosen)
        if not args.json:
            seconds = estimate_seconds(
                loaded.module, chosen, len(units), loaded.input, render, args.batch_size
            )
            print(
                f"{len(units)} unit(s) of {chosen.name}, {render.steps} steps at {render.size} px "
                f"on {device}: about {duration(seconds)} (units already stored are reused)"
            )
        report = render_and_store(
            session,
            run,
            loaded,
            chosen,
            units,
            render,
            store,
            device,
            TerminalProgress(enabled=not args.json),
            args.batch_size,
        )
        records = _records(session, store, args.run, chosen.name, units)
    summary = {"run": args.run, **report.as_json(), "visualisations": records}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print_json(summary)
        return 0
    print_table(
        ["unit", "activation", "random", "images"],
        [
            [r["unit"], f"{r['activation']:.4g}", f"{r['random_activation']:.4g}", r["png"]]
            for r in records
        ],
    )
    print(f"\n{report.rendered} rendered, {report.reused} reused, {summary['seconds']} s")
    return 0


def _records(
    session: Any, store: Any, run_id: int, target: str, units: list[int]
) -> list[dict[str, Any]]:
    """The newest visualisation of each unit (all images of a diverse set)."""
    from server.featureviz.read import featureviz_records

    records = []
    for unit in units:
        found = featureviz_records(session, store, run_id, target, unit)
        newest = [r for r in found if r["params"] == found[0]["params"]] if found else []
        records += [{"unit": unit, **record} for record in newest]
    return records


def _queue(
    args: argparse.Namespace,
    settings: Any,
    database: Any,
    target: dict[str, Any],
    units: list[int] | None,
    options: dict[str, Any],
) -> int:
    from server.cli.jobs import watch_job
    from server.jobs.planning import featureviz_job
    from server.jobs.queue import JobQueue, create_huey
    from server.jobs.read import job_record
    from server.jobs.state import submit
    from server.jobs.submit import submit_work
    from server.runs.read import get_run

    def plan(session: Any) -> tuple[dict[str, Any], list[int]]:
        run = get_run(session, args.run)
        job, ready = submit(session, featureviz_job(run, {**target, "units": units}, options))
        return job_record(job), [job.id] if ready else []

    job = submit_work(database, JobQueue(create_huey(settings)), plan)
    if not args.wait:
        if args.json:
            print_json(job)
        else:
            print(f"job {job['id']} ({job['status']}); a worker renders it: neuronscope worker")
        return 0
    status = watch_job(database, job["id"], enabled=not args.json)
    if args.json:
        print_json({"job": job["id"], "status": status})
    else:
        print(f"job {job['id']}: {status}")
    return 0 if status == "done" else 1


def run_dream(args: argparse.Namespace) -> int:
    from PIL import UnidentifiedImageError

    from server.featureviz.render import FeatureVizError, dream_image, image_png, read_image
    from server.runs.inputs import ModelCache
    from server.runs.read import get_run

    source = Path(args.image).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"image not found: {source}")
    try:
        image = read_image(source, args.max_side)
    except (UnidentifiedImageError, OSError) as error:
        raise FeatureVizError(f"{source} is not a readable image: {error}") from None
    settings, database, _store = open_database()
    started = time.perf_counter()
    with database.session() as session:
        loaded, available = ModelCache().load(get_run(session, args.run).model)
    dreamt = dream_image(
        loaded,
        image,
        args.layer,
        available,
        args.device or settings.device,
        octaves=args.octaves,
        steps=args.steps,
        progress=TerminalProgress(enabled=not args.json),
    )
    from PIL import Image

    out = Path(args.out).expanduser()
    Image.fromarray(image_png(dreamt)).save(out)
    seconds = round(time.perf_counter() - started, 2)
    if args.json:
        print_json({"out": str(out.resolve()), "layer": args.layer, "seconds": seconds})
    else:
        print(f"wrote {out} ({dreamt.shape[2]}×{dreamt.shape[1]} px) in {seconds} s")
    return 0
