import csv
import re
from pathlib import Path

from django.core.management.base import CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from cases.management.reporting import ReportingCommand, RunReport
from cases.models import Case, MaskSource, TypeSource
from cases.readers import FIGSHARE_LABELS, ImageReadError, to_uint8
from cases.rendering import mask_png_bytes, pixels_png_bytes
from cases.selectors import case_base_list, case_ground_truth_mask, scan_read

LABEL_CODES = {name: code for code, name in FIGSHARE_LABELS.items()}
COLUMNS = [
    "id",
    "label",
    "label_name",
    "pid",
    "patient_group",
    "orig_height",
    "orig_width",
    "mask_pixels_orig",
]


class Command(ReportingCommand):
    help = (
        "Export every case with a ground-truth mask in the shared dataset layout: cases.csv, images/{id}.png "
        "(8-bit grayscale) and masks/{id}.png (0/255), at the stored resolution, so import_cases can read it "
        "back. Imported cases keep their dataset id; others are named case<pk>. --clinician-outlines and "
        "--since narrow it to the outlines clinicians drew, to score models on cases none saw in training; "
        "--trusted-types to the cases whose tumour type a clinician entered or the dataset gave."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "outdir", help="Folder to write (created if needed; files of the same name are replaced)."
        )
        parser.add_argument(
            "--clinician-outlines",
            action="store_true",
            help="Only cases whose outline a clinician drew (corrected, or restored from an earlier "
            "version), not the dataset's imported masks.",
        )
        parser.add_argument(
            "--since",
            metavar="DATETIME",
            help="Only cases whose outline was last set at or after this ISO 8601 time with a zone "
            "(e.g. 2026-12-01T00:00Z).",
        )
        parser.add_argument(
            "--trusted-types",
            action="store_true",
            help="Only cases whose tumour type a clinician entered or the dataset gave, never a suggested "
            "one: the labels to train a type classifier on, which must not learn its own suggestions.",
        )
        super().add_arguments(parser)

    def handle(self, *args, outdir: str, **options):
        cases = case_base_list().order_by("id")
        if options["clinician_outlines"]:
            cases = cases.filter(mask_source__in=(MaskSource.CORRECTED, MaskSource.RESTORED))
        if options["trusted_types"]:
            cases = cases.filter(tumour_type_source__in=(TypeSource.CLINICIAN, TypeSource.IMPORTED))
        if options["since"]:
            since = parse_datetime(options["since"])
            if since is None or since.tzinfo is None:
                raise CommandError(
                    f"--since {options['since']!r} is not an ISO 8601 time with a time zone "
                    "(e.g. 2026-12-01T00:00:00+00:00)."
                )
            cases = cases.filter(mask_updated_at__gte=since)
        out = Path(outdir)
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "masks").mkdir(parents=True, exist_ok=True)
        report = RunReport(verb="exported")
        report.skipped = Case.objects.count() - cases.count()  # no ground-truth mask yet, or not selected
        rows = []
        for case in tqdm(
            cases, total=cases.count(), desc="export_cases", unit="case", disable=options["no_progress"]
        ):
            case_id = _export_id(case)
            try:
                pixels = to_uint8(scan_read(scan=case.scan).pixels)
                mask = case_ground_truth_mask(case=case)
            except (ImageReadError, OSError, ValueError) as exc:
                report.fail(case.scan.file.name, exc)
                continue
            (out / "images" / f"{case_id}.png").write_bytes(pixels_png_bytes(pixels))
            (out / "masks" / f"{case_id}.png").write_bytes(mask_png_bytes(mask))
            pid = case.patient.identifier
            rows.append(
                {
                    "id": case_id,
                    "label": LABEL_CODES.get(case.tumour_type, ""),
                    "label_name": case.tumour_type or "",
                    "pid": pid,
                    # The dataset's convention: a trailing letter marks a re-scan of the same person.
                    "patient_group": re.sub(r"(?<=\d)[A-Za-z]$", "", pid),
                    "orig_height": case.scan.height,
                    "orig_width": case.scan.width,
                    "mask_pixels_orig": int(mask.sum()),
                }
            )
            report.done += 1
        with (out / "cases.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.finish(report, options["json_path"])


def _export_id(case) -> str:
    if case.source_ref and case.source_ref.startswith("figshare:"):
        return case.source_ref.split(":", 1)[1]
    return f"case{case.pk}"
