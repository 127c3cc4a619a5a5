"""``manage.py storage_check``: stored files that no row names, and rows whose file is gone."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.storage import storage_consistency

SHOWN = 20  # names listed in the text summary per kind; --json has them all


class Command(BaseCommand):
    help = (
        "Compare media storage with the database: files in storage that no row names (scans, masks, mask "
        "versions, segmentation outputs) and rows whose file is missing. Exits with status 1 when it finds "
        "either. Deletes nothing unless --delete-orphan-files, and never a file a row names."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            nargs="?",
            const="-",
            metavar="PATH",
            dest="json_path",
            help="Write the report as JSON to PATH, or to standard output when no PATH is given.",
        )
        parser.add_argument(
            "--delete-orphan-files",
            action="store_true",
            help="Delete the orphan files found (older than --min-age; each checked again just before).",
        )
        parser.add_argument(
            "--min-age",
            type=int,
            default=60,
            metavar="MINUTES",
            help=(
                "An unreferenced file younger than this is not counted as an orphan: its row may not be "
                "committed yet (default 60)."
            ),
        )

    def handle(self, *args, **options) -> None:
        if options["min_age"] < 0:
            raise CommandError("--min-age must be 0 or more minutes.")
        report = storage_consistency(
            min_age=timedelta(minutes=options["min_age"]), delete_orphans=options["delete_orphan_files"]
        )
        json_path = options["json_path"]
        if json_path == "-":
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            if json_path:
                Path(json_path).parent.mkdir(parents=True, exist_ok=True)
                Path(json_path).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
            self._summary(report)
        if report.problems:
            raise CommandError(
                f"{len(report.orphan_files)} orphan file(s), {len(report.missing_files)} row(s) with a "
                f"missing file; {len(report.deleted)} file(s) deleted.",
                returncode=1,
            )

    def _summary(self, report) -> None:
        self.stdout.write(
            f"Checked {report.files} file(s) under {', '.join(report.folders) or 'no folder'} "
            f"against {report.references} stored name(s) in the database."
        )
        for title, names in (
            ("Orphan files (no row names them)", report.orphan_files),
            (
                "Rows whose file is missing",
                [f"{r.model} {r.pk} {r.field}: {r.name}" for r in report.missing_files],
            ),
            ("Deleted", report.deleted),
        ):
            if names:
                self.stdout.write(f"{title}: {len(names)}")
                for name in names[:SHOWN]:
                    self.stdout.write(f"  {name}")
                if len(names) > SHOWN:
                    self.stdout.write(f"  ... and {len(names) - SHOWN} more (--json lists them all)")
        if report.recent_unreferenced:
            self.stdout.write(
                f"Not counted: {len(report.recent_unreferenced)} unreferenced file(s) younger than --min-age."
            )
        if not report.problems:
            self.stdout.write(self.style.SUCCESS("Storage and database agree."))
