"""What the import/export commands share: counting, the summary line and the --json report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cases.services import cases_save


@dataclass
class RunReport:
    verb: str = "imported"  # the key of the success count in the JSON report
    done: int = 0
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)

    def fail(self, file: str | Path, error: str | Exception) -> None:
        self.failed.append({"file": str(file), "error": str(error)})

    def as_dict(self) -> dict:
        return {self.verb: self.done, "skipped": self.skipped, "failed": self.failed}

    def summary(self) -> str:
        return f"{self.verb} {self.done}, skipped {self.skipped}, failed {len(self.failed)}"


class ReportingCommand(BaseCommand):
    """A command that ends with a summary line and can write its report with --json PATH."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            metavar="PATH",
            dest="json_path",
            help=(
                'Also write the report as JSON: {"imported": n, "skipped": n, "failed": [{"file", "error"}]}.'
            ),
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Hide the progress bar (for logs and CI)."
        )

    def finish(self, report: RunReport, json_path: str | None) -> None:
        for failure in report.failed[:20]:
            self.stderr.write(f"  failed: {failure['file']}: {failure['error']}")
        if len(report.failed) > 20:
            self.stderr.write(f"  ... and {len(report.failed) - 20} more failures")
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        style = self.style.SUCCESS if not report.failed else self.style.WARNING
        self.stdout.write(style(report.summary()))


class ImportCommand(ReportingCommand):
    """An importer: reads files with the upload limits and saves prepared cases in batches."""

    def reader_limits(self) -> dict:
        return {
            "max_bytes": settings.TUMORSITE_MAX_UPLOAD_MB * 1024 * 1024,
            "max_pixels": settings.TUMORSITE_MAX_PIXELS,
        }

    def save_batch(self, batch: list, report: RunReport) -> None:
        try:
            report.done += len(cases_save(batch))
        except Exception as exc:  # one bad batch should not lose the rest of a long import
            for item in batch:
                report.fail(item.scan.original_filename, f"could not be saved: {exc}")
        batch.clear()
