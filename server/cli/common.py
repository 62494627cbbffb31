"""Options and set-up shared by several commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from server.config import Settings, load_settings

if TYPE_CHECKING:
    from analysis.models import LoadedModel
    from server.storage.artifacts import ArtifactStore
    from server.storage.db import Database


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help=".safetensors or state-dict .pt/.pth (never unpickled)")
    parser.add_argument(
        "--input-size", help="input size in pixels: N (square) or H,W (default 224)"
    )
    parser.add_argument(
        "--mean", help="normalisation mean R,G,B, or one number for a greyscale model"
    )
    parser.add_argument("--std", help="normalisation std R,G,B, or one number (greyscale)")


def load_model_from_args(spec: str, args: argparse.Namespace) -> LoadedModel:
    from analysis.models import load_model, parse_numbers, parse_size

    return load_model(
        spec,
        weights=args.weights,
        input_size=parse_size(args.input_size) if args.input_size else None,
        mean=parse_numbers(args.mean) if args.mean else None,
        std=parse_numbers(args.std) if args.std else None,
    )


def open_database(settings: Settings | None = None) -> tuple[Settings, Database, ArtifactStore]:
    """Settings, database and artifact store; SQLAlchemy and Alembic load only here, so commands
    that need no database (``layers``) start without them."""
    from server.storage.artifacts import ArtifactStore
    from server.storage.db import Database

    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings, Database(settings.database_url), ArtifactStore(settings.artifact_dir)


def parse_units(text: str) -> list[int]:
    """``"0-3,7"`` → ``[0, 1, 2, 3, 7]``: channels or classes, in the order given, no repeats."""
    from server.featureviz.render import FeatureVizError

    units: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise FeatureVizError(f"expected numbers and ranges like 0-63,70, got {text!r}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise FeatureVizError(f"the range {part!r} runs backwards")
        units += [unit for unit in range(first, last + 1) if unit not in units]
    return units
