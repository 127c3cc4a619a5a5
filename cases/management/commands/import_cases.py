import csv
import time
from pathlib import Path

import numpy as np
from django.core.management.base import CommandError, CommandParser
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from cases.management.reporting import ImportCommand, RunReport
from cases.models import Case, TumourType, TypeSource
from cases.readers import FIGSHARE_LABELS, ImageReadError, read_image
from cases.services import case_prepare, patients_get_or_create


class Command(ImportCommand):
    help = (
        "Import a dataset in the shared layout (cases.csv, images/{id}.png, masks/{id}.png) with its "
        "ground-truth masks and tumour types as 'imported'. Idempotent: a case whose id was imported "
        "before is skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "directory", help="Folder holding cases.csv, images/ and masks/ (e.g. ../shared/data/figshare)."
        )
        parser.add_argument(
            "--source-prefix",
            default="figshare",
            help="Prefix of each case's source reference '<prefix>:<id>', which makes re-imports idempotent "
            "(default: figshare).",
        )
        parser.add_argument(
            "--limit", type=int, default=None, help="Import at most this many rows of cases.csv."
        )
        parser.add_argument(
            "--batch-size", type=int, default=250, help="Rows saved per database transaction (default: 250)."
        )
        super().add_arguments(parser)

    def handle(
        self, *args, directory: str, source_prefix: str, limit: int | None, batch_size: int, **options
    ):
        root = Path(directory)
        rows = _read_csv(root / "cases.csv")[:limit]
        started = time.monotonic()
        report = RunReport(verb="imported")
        existing = set(
            Case.objects.filter(source_ref__startswith=f"{source_prefix}:").values_list(
                "source_ref", flat=True
            )
        )
        todo = [row for row in rows if f"{source_prefix}:{row['id']}" not in existing]
        report.skipped = len(rows) - len(todo)
        patients = patients_get_or_create(identifiers={row["pid"] for row in todo})
        limits = self.reader_limits()

        batch = []
        for row in tqdm(todo, desc="import_cases", unit="case", disable=options["no_progress"]):
            image_path = root / "images" / f"{row['id']}.png"
            try:
                data = image_path.read_bytes()
                image = read_image(data, image_path.name, **limits)
                mask = _read_mask(root / "masks" / f"{row['id']}.png")
                batch.append(
                    case_prepare(
                        image=image,
                        data=data,
                        filename=image_path.name,
                        patient=patients[row["pid"]],
                        tumour_type=_tumour_type(row),
                        tumour_type_source=TypeSource.IMPORTED,
                        source_ref=f"{source_prefix}:{row['id']}",
                        mask=mask,
                    )
                )
            except (ImageReadError, OSError, ValueError) as exc:
                report.fail(image_path, exc)
            if len(batch) >= batch_size:
                self.save_batch(batch, report)
        self.save_batch(batch, report)
        self.stdout.write(f"{root}: {len(rows)} rows in {time.monotonic() - started:.1f} s")
        self.finish(report, options["json_path"])


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise CommandError(f"{path} not found: the folder needs cases.csv, images/ and masks/")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"id", "pid"} - set(rows[0] if rows else {})
    if rows and missing:
        raise CommandError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
    return rows


def _tumour_type(row: dict) -> str | None:
    label = (row.get("label") or "").strip()
    if label:
        try:
            return FIGSHARE_LABELS[int(float(label))]
        except (KeyError, ValueError):
            raise ValueError(f"label {label!r} is not 1, 2 or 3") from None
    name = (row.get("label_name") or "").strip().lower()
    if name and name not in TumourType.values:
        raise ValueError(f"label_name {name!r} is not one of {', '.join(TumourType.values)}")
    return name or None


def _read_mask(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) > 127
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"mask {path.name} cannot be read: {exc}") from None
