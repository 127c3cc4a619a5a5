import hashlib
import re
from pathlib import Path

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from cases.management.reporting import ImportCommand, RunReport
from cases.models import Case, TypeSource
from cases.readers import ImageReadError, read_image
from cases.services import case_prepare, patients_get_or_create

# Files of the Figshare download that are not slices (cvind.mat: the 5-fold patient split).
NOT_SLICES = {"cvind.mat"}


class Command(ImportCommand):
    help = (
        "Import the original Figshare brain-tumour files (N.mat, MATLAB v7.3) found anywhere below a folder: "
        "image, tumour mask, tumour type and patient ID. Idempotent: N.mat becomes source 'figshare:N', "
        "the same reference import_cases uses, so a slice is never imported twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", help="Folder searched recursively for *.mat files.")
        parser.add_argument(
            "--batch-size", type=int, default=100, help="Files saved per database transaction (default: 100)."
        )
        super().add_arguments(parser)

    def handle(self, *args, directory: str, batch_size: int, **options):
        root = Path(directory)
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        paths = sorted(root.rglob("*.mat"), key=_natural_key)
        report = RunReport(verb="imported")
        existing = set(Case.objects.exclude(source_ref=None).values_list("source_ref", flat=True))
        limits = self.reader_limits()
        patients: dict = {}
        batch = []
        for path in tqdm(paths, desc="import_figshare", unit="file", disable=options["no_progress"]):
            if path.name.lower() in NOT_SLICES:
                report.skipped += 1
                continue
            try:
                data = path.read_bytes()
                ref = (
                    f"figshare:{path.stem}"
                    if path.stem.isdigit()
                    else f"mat-sha256:{hashlib.sha256(data).hexdigest()[:40]}"
                )
                if ref in existing:
                    report.skipped += 1
                    continue
                image = read_image(data, path.name, **limits)
                if image.format != "mat":
                    raise ImageReadError(f"expected a MATLAB v7.3 file, found {image.format}")
                identifier = image.patient_id or f"figshare-{path.stem}"
                if identifier not in patients:
                    patients.update(patients_get_or_create(identifiers=[identifier]))
                batch.append(
                    case_prepare(
                        image=image,
                        data=data,
                        filename=path.name,
                        patient=patients[identifier],
                        tumour_type_source=TypeSource.IMPORTED,
                        source_ref=ref,
                    )
                )
                existing.add(ref)  # the same slice twice in one folder is imported once
            except (ImageReadError, OSError) as exc:
                report.fail(path, exc)
            if len(batch) >= batch_size:
                self.save_batch(batch, report)
        self.save_batch(batch, report)
        self.finish(report, options["json_path"])


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
