"""``neuronscope layers`` and ``neuronscope analyze``: inspect a model, run an analysis."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from server.cli.common import add_model_options, load_model_from_args, open_database
from server.cli.output import duration, print_json, print_table
from server.cli.progress import TerminalProgress

if TYPE_CHECKING:  # the CLI imports torch only for the commands that need it
    from analysis.data import ImageFolder
    from analysis.resize import ResizePolicy


def add_commands(commands: Any) -> None:
    layers = commands.add_parser("layers", help="list a model's layers with receptive fields")
    layers.add_argument("model", help="torchvision:NAME, a .pt2 export, or package.module:callable")
    add_model_options(layers)
    layers.add_argument("--json", action="store_true", help="print a JSON list")
    layers.set_defaults(handler=run_layers)

    analyze = commands.add_parser("analyze", help="analyse a model over an image folder")
    analyze.add_argument("--model", required=True, help="model spec (see `layers`)")
    add_model_options(analyze)
    analyze.add_argument("--data", required=True, help="image folder (one subfolder per class)")
    analyze.add_argument(
        "--layers", help="comma-separated layer names (default: every conv's activation)"
    )
    analyze.add_argument("--top-k", type=int, default=100, help="top images kept per neuron")
    analyze.add_argument(
        "--resize",
        default="model",
        help="how an image becomes the input: whole, center-crop, or center-crop SIZE [bicubic] "
        "(scale the shorter side to SIZE, then crop the centre); default: the model's own "
        "(a zoo model's evaluation transform, else whole)",
    )
    analyze.add_argument(
        "--jpeg-draft",
        action="store_true",
        help="decode JPEGs at the smallest DCT scale (1/2 to 1/8) that covers the input size: "
        "several times faster on camera photos; pixels differ slightly from a full decode",
    )
    analyze.add_argument("--device", help="torch device (default $NEURONSCOPE_DEVICE or cpu)")
    analyze.add_argument("--batch-size", type=int, default=64)
    analyze.add_argument(
        "--workers", type=int, help="image-loading processes (default: one per core)"
    )
    analyze.add_argument(
        "--no-indexes", action="store_true", help="skip selectivity indexes and physiology"
    )
    analyze.add_argument(
        "--featureviz",
        action="store_true",
        help="also render a feature visualisation of every analysed neuron (slow on a CPU)",
    )
    analyze.add_argument("--fv-steps", type=int, help="with --featureviz: steps (default 512)")
    analyze.add_argument("--fv-size", type=int, help="with --featureviz: image size (default 128)")
    analyze.add_argument("--json", action="store_true", help="print the result as JSON")
    analyze.add_argument(
        "--queue", action="store_true", help="enqueue jobs for workers instead of computing here"
    )
    analyze.add_argument(
        "--shards", type=int, default=1, help="with --queue: sweep jobs to split the images into"
    )
    analyze.add_argument(
        "--wait", action="store_true", help="with --queue: show progress until the run ends"
    )
    analyze.add_argument(
        "--yes",
        action="store_true",
        help="start a run estimated over 10 minutes or half the free disk without asking",
    )
    analyze.set_defaults(handler=run_analyze)


def run_layers(args: argparse.Namespace) -> int:
    import sys

    from analysis.layers import default_layers, list_layers, unmapped_layers

    loaded = load_model_from_args(args.model, args)
    layers = list_layers(loaded.module, loaded.input)
    defaults = set(default_layers(layers))
    records = [{**layer.as_json(), "default": layer.name in defaults} for layer in layers]
    left_out = unmapped_layers(loaded.module, loaded.input, layers)
    if left_out:
        print(
            f"neuronscope: {len(left_out)} module(s) with 4-D outputs left out, e.g. "
            f"{left_out[0]}: their outputs are no channel maps with a local receptive window "
            "(attention over tokens, channels-last tokens or upsampling)",
            file=sys.stderr,
        )
    if args.json:
        print_json(records)
        return 0
    print(describe_model(loaded), file=sys.stderr)
    print_table(
        ["name", "type", "channels", "map", "rf size", "stride", "offset", "activation", "default"],
        [
            [
                r["name"],
                r["type"],
                r["channels"],
                r["map_size"],
                r["rf_size"],
                r["rf_stride"],
                r["rf_offset"],
                r["activation"],
                "yes" if r["default"] else "",
            ]
            for r in records
        ],
    )
    print(
        f"{len(defaults)} of {len(records)} layers are recorded by default (`analyze` without "
        "--layers); --layers names others",
        file=sys.stderr,
    )
    return 0


def describe_model(loaded: Any) -> str:
    """One line on what was loaded: its weights and the input it will be given."""
    from analysis.metadata import META_SOURCE, class_names

    source = loaded.metadata.get(META_SOURCE)
    weights = f"pretrained {source}" if source else loaded.weights_path or "random weights (seeded)"
    spec = loaded.input
    classes = len(class_names(loaded.metadata))
    return (
        f"{loaded.spec}: {weights}; input {spec.height}×{spec.width} px, "
        f"{loaded.resize.value}, mean {', '.join(f'{v:g}' for v in spec.mean)}, "
        f"std {', '.join(f'{v:g}' for v in spec.std)}"
        + (f"; {classes:,} named classes" if classes else "")
    )


def run_analyze(args: argparse.Namespace) -> int:
    from analysis.data import DatasetError, scan_image_folder
    from analysis.models import ModelError
    from analysis.resize import ResizePolicy
    from server.runs.stages import AnalysisSettings, analyze_folder

    if args.top_k < 1:
        raise ModelError(f"--top-k must be at least 1, got {args.top_k}")
    folder = scan_image_folder(args.data)
    if args.batch_size < 1:
        raise DatasetError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.shards < 1:
        raise DatasetError(f"--shards must be at least 1, got {args.shards}")
    if args.workers is not None and args.workers < 0:
        raise DatasetError(f"--workers must be 0 or more, got {args.workers}")
    settings, database, store = open_database()
    device = args.device or settings.device
    loaded = load_model_from_args(args.model, args)
    args.resize = resize_for(loaded, args.resize)
    requested = (
        [name.strip() for name in args.layers.split(",") if name.strip()] if args.layers else None
    )
    if not args.jpeg_draft and not args.json:
        suggest_jpeg_draft(folder, loaded.input.size, ResizePolicy.of(args.resize))
    if not args.json and not confirm_budget(args, loaded, folder, requested, store, device):
        print("neuronscope: not started", file=sys.stderr)
        return 1
    if args.queue:
        return enqueue_analysis(args, settings, database, loaded, folder, requested)
    started = time.perf_counter()
    analysis_settings = AnalysisSettings(
        device=device,
        batch_size=args.batch_size,
        workers=args.workers,
        indexes=not args.no_indexes,
    )
    with database.session() as session:
        outcome = analyze_folder(
            session,
            store,
            loaded,
            folder,
            requested,
            top_k=args.top_k,
            resize=ResizePolicy.of(args.resize),
            settings=analysis_settings,
            jpeg_draft=args.jpeg_draft,
            progress=TerminalProgress(enabled=not args.json),
        )
        from server.runs.read import get_run, run_summary

        if args.featureviz:
            render_run_featureviz(
                session, store, outcome.run_id, loaded, featureviz_options(args), device, args.json
            )
        summary = run_summary(get_run(session, outcome.run_id))
    summary["reused"] = outcome.reused
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print_json({"run": outcome.run_id, **summary})
        return 0
    print_run_report(summary, settings.artifact_dir)
    return 0


DRAFT_SAMPLE = 16  # images whose headers are read to suggest --jpeg-draft


def suggest_jpeg_draft(folder: ImageFolder, size: tuple[int, int], policy: ResizePolicy) -> None:
    """Tell the user about ``--jpeg-draft`` when most of a sample of the folder are JPEGs it
    would decode at a reduced scale: camera photos spend most of a CPU sweep decoding."""
    from analysis.data import jpeg_draft_scale

    count = len(folder.images)
    drawn = min(count, DRAFT_SAMPLE)
    sample = [i * count // drawn for i in range(drawn)]  # evenly spaced, each image once
    scales = [jpeg_draft_scale(folder.root / folder.images[i].path, size, policy) for i in sample]
    reduced = [scale for scale in scales if scale > 1]
    if reduced and 2 * len(reduced) >= len(scales):
        print(
            f"neuronscope: {len(reduced)} of {len(scales)} sampled images are JPEGs at least "
            f"twice the input size; --jpeg-draft would decode them at 1/{min(reduced)} scale or "
            "less, several times faster (their pixels differ slightly, so it is another run)",
            file=sys.stderr,
        )


def confirm_budget(
    args: argparse.Namespace,
    loaded: Any,
    folder: ImageFolder,
    requested: list[str] | None,
    store: Any,
    device: str,
) -> bool:
    """Print what the run will cost (:mod:`server.runs.budget`); for a long or large one, say
    what shrinks it and, at a terminal, ask before starting (``--yes`` does not ask)."""
    from analysis.layers import list_layers
    from server.jobs.estimate import run_budget
    from server.runs.selection import select_layers

    layers = select_layers(list_layers(loaded.module, loaded.input), requested)
    budget = run_budget(
        loaded,
        folder,
        layers,
        args.top_k,
        args.batch_size,
        args.resize,
        indexes=not args.no_indexes,
        featureviz=featureviz_options(args) if args.featureviz else None,
        store=store,
        device=device,
    )
    neurons = sum(layer.channels for layer in layers)
    where = "a worker's device" if args.queue else device
    print(
        f"estimate for {len(layers)} layer(s), {neurons:,} neurons, {len(folder.images):,} "
        f"images on {where} (from a short trial; within about a factor of 2):",
        file=sys.stderr,
    )
    for line in budget.lines():
        print(line, file=sys.stderr)
    if not budget.large:
        return True
    print("that is long or large; these shrink it:", file=sys.stderr)
    for way in budget.advice(indexes=not args.no_indexes):
        print(f"  {way}", file=sys.stderr)
    if args.yes or not sys.stdin.isatty():
        return True
    answer = input("start it? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def featureviz_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"steps": args.fv_steps, "size": args.fv_size}
    return {name: value for name, value in options.items() if value is not None}


def print_featureviz_estimate(
    loaded: Any, layers: list[Any], options: dict[str, Any], device: str
) -> None:
    """How long the visualisations of ``layers`` take, measured by trial steps on ``device``."""
    from analysis.featureviz.targets import Target
    from analysis.featureviz.units import estimate_seconds
    from server.featureviz.render import render_settings

    settings = render_settings(options)
    model = loaded.module.to(device)
    seconds = sum(
        estimate_seconds(model, Target(layer.name), layer.channels, loaded.input, settings)
        for layer in layers
    )
    neurons = sum(layer.channels for layer in layers)
    print(
        f"feature visualisations of {neurons} neurons ({settings.steps} steps at "
        f"{settings.size} px on {device}): about {duration(seconds)}"
    )


def render_run_featureviz(
    session: Any,
    store: Any,
    run_id: int,
    loaded: Any,
    options: dict[str, Any],
    device: str,
    quiet: bool = False,
) -> None:
    """A feature visualisation of every neuron of a run's layers, in this process; the time it
    will take is estimated and printed first."""
    from analysis.featureviz.targets import Target
    from analysis.layers import list_layers
    from server.featureviz.render import render_and_store, render_settings
    from server.runs.read import get_run

    run = get_run(session, run_id)
    settings = render_settings(options)
    layers = {layer.name: layer for layer in list_layers(loaded.module, loaded.input)}
    names = list(run.params["layers"])
    if not quiet:
        print_featureviz_estimate(loaded, [layers[name] for name in names], options, device)
    for name in names:
        render_and_store(
            session,
            run,
            loaded,
            Target(name),
            list(range(layers[name].channels)),
            settings,
            store,
            device,
            TerminalProgress(enabled=not quiet),
        )


def print_run_report(summary: dict[str, Any], artifact_dir: Any) -> None:
    """The human summary after an analysis: one line per layer, then where to look."""
    verb = "reused finished" if summary["reused"] else "finished"
    print(f"\nrun {summary['id']} {verb}: {summary['model']} over {summary['dataset']}")
    stats = summary["stats"]
    if stats.get("unreadable_count") or stats.get("skipped_count"):
        print(
            f"  {stats.get('unreadable_count', 0)} unreadable image(s) and "
            f"{stats.get('skipped_count', 0)} non-image file(s) were skipped"
        )
    from server.cli.browse import print_layers_of_run

    print_layers_of_run(summary["id"])
    indexes = stats.get("indexes_seconds")
    print(
        f"\ntime: {summary['seconds']} s (sweep {stats.get('sweep_seconds')} s, "
        f"neuron features {stats.get('features_seconds')} s"
        + (f", indexes {indexes} s)" if indexes is not None else ")")
    )
    print(f"Neuron Features (PNG) are stored under {artifact_dir}; read any neuron with")
    print(f"  neuronscope neuron {summary['id']} {summary['layers'][-1]} 0 --json")


def resize_for(loaded: Any, text: str) -> str:
    """The run's resize text: the model's own for ``model``, else ``text`` checked."""
    from analysis.models import ModelError
    from analysis.resize import ResizePolicy

    try:
        return (loaded.resize if text == "model" else ResizePolicy.of(text)).value
    except ValueError as error:
        raise ModelError(f"--resize: {error}") from None


def enqueue_analysis(
    args: argparse.Namespace,
    settings: Any,
    database: Any,
    loaded: Any,
    folder: Any,
    requested: list[str] | None,
) -> int:
    """Register the model, dataset and run here (so mistakes show at once), then queue its jobs."""
    from analysis.layers import list_layers
    from server.cli.jobs import watch_run
    from server.jobs.planning import PlanOptions, plan_analysis
    from server.jobs.queue import JobQueue, create_huey
    from server.jobs.read import job_record
    from server.jobs.submit import submit_work
    from server.runs.register import RunParams, find_or_create_run, register_dataset, register_model
    from server.runs.selection import select_layers

    available = list_layers(loaded.module, loaded.input)
    layers = select_layers(available, requested)
    params = RunParams(
        tuple(layer.name for layer in layers), args.top_k, args.resize, args.jpeg_draft
    )
    options = PlanOptions(
        shards=args.shards,
        batch_size=args.batch_size,
        indexes=not args.no_indexes,
        featureviz=featureviz_options(args) if args.featureviz else None,
    )

    def plan(session: Any) -> tuple[dict[str, Any], list[int]]:
        model = register_model(session, loaded, available)
        dataset = register_dataset(session, folder)
        run, _finished = find_or_create_run(session, model, dataset, params, clear=False)
        jobs, to_send = plan_analysis(session, run, options)
        session.flush()
        return {"run": run.id, "jobs": [job_record(job) for job in jobs]}, to_send

    queued = submit_work(database, JobQueue(create_huey(settings)), plan)
    if options.featureviz is not None and not args.json:
        print_featureviz_estimate(loaded, layers, options.featureviz, args.device or "cpu")
    if args.json and not args.wait:
        print_json(queued)
        return 0
    if not args.json:
        print_table(
            ["job", "kind", "status", "images / layer"],
            [
                [
                    job["id"],
                    job["kind"],
                    job["status"],
                    job["params"].get("layer")
                    or (
                        f"{job['params']['start']}–{job['params']['end']}"
                        if "start" in job["params"]
                        else ""
                    ),
                ]
                for job in queued["jobs"]
            ],
        )
        if queued["jobs"]:
            print(f"\nrun {queued['run']}: {len(queued['jobs'])} job(s); a worker runs them:")
            print(
                "  neuronscope worker          # one per GPU, on any machine sharing the database"
            )
        else:
            print(f"run {queued['run']} is already done; nothing to queue")
    if not args.wait:
        return 0
    status = watch_run(database, queued["run"], enabled=not args.json)
    if args.json:
        print_json({"run": queued["run"], "status": status})
    else:
        print(f"run {queued['run']}: {status}")
    return 0 if status == "done" else 1
