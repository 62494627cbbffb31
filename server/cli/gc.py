"""``neuronscope gc``: delete artifact files that no run, upload or job names any more; and,
asked, the float NF arrays computed on request (they are computed again when next asked for)."""

from __future__ import annotations

import argparse
from typing import Any

from server.cli.common import open_database
from server.cli.output import print_json


def add_commands(commands: Any) -> None:
    gc = commands.add_parser(
        "gc", help="delete artifact files nothing refers to (see what first with --dry-run)"
    )
    gc.add_argument("--dry-run", action="store_true", help="only count what would go")
    gc.add_argument(
        "--float-arrays",
        action="store_true",
        help="also forget the float NF arrays computed on request (recomputed when next asked)",
    )
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(handler=run_gc)


def run_gc(args: argparse.Namespace) -> int:
    from sqlalchemy import delete, update

    from server.storage.collect import GRACE_SECONDS, unreferenced
    from server.storage.schema import Neuron, PackedArtifact

    _settings, database, store = open_database()
    forgotten = 0
    if args.float_arrays and not args.dry_run:
        with database.session() as session:
            forgotten = session.execute(
                update(Neuron).where(Neuron.nf_array_key.is_not(None)).values(nf_array_key=None)
            ).rowcount
    found = unreferenced(store, database.engine)
    if not args.dry_run:
        with database.session() as session:
            rows = found.packed_rows
            session.execute(delete(PackedArtifact).where(PackedArtifact.id.in_(rows)))
            session.commit()
        for path in found.paths:
            path.unlink(missing_ok=True)
    summary = {
        "files": len(found.paths),
        "bytes": found.bytes,
        "deleted": not args.dry_run,
        "float_arrays_forgotten": forgotten,
    }
    if args.json:
        print_json(summary)
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {len(found.paths):,} artifact files nothing refers to "
        f"({found.bytes / 1e6:,.1f} MB; files written in the last {GRACE_SECONDS / 60:.0f} "
        "minutes are kept, as a job may not have stored their rows yet)"
    )
    if forgotten:
        print(f"forgot {forgotten:,} float NF arrays (recomputed when next asked for)")
    return 0
