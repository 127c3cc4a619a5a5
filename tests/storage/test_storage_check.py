"""``manage.py storage_check``: orphan files and rows whose file is missing, reported both ways; it deletes
only with --delete-orphan-files, and never a file that a row names."""

from __future__ import annotations

import json
import os
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from cases.review import case_mask_correct
from segmentation.testing import make_case, synthetic_slice
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db

TWO_HOURS = 2 * 3600


def _check(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("storage_check", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def _report(*args: str) -> tuple[int, dict]:
    code, out = _check("--json", *args)
    return code, json.loads(out)


def _stray(relative: str, *, age_s: int = TWO_HOURS) -> Path:
    path = Path(settings.MEDIA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not named by any row")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@pytest.fixture
def record(owner):
    """A case with every kind of file: a scan, an imported mask (version 1), a correction (version 2) and
    a run's mask."""
    case = make_case(user=owner, ground_truth=True, size=64)
    corrected = np.zeros((64, 64), bool)
    corrected[5:20, 5:20] = True
    case_mask_correct(case=case, mask=corrected, user=owner)
    add_finished_run(case, "tiny_unet", synthetic_slice(64, seed=1)[1])
    return case


def test_a_consistent_record_passes(record):
    code, out = _check("--min-age", "0")
    assert code == 0 and "Storage and database agree." in out
    code, report = _report("--min-age", "0")
    assert code == 0 and report["orphan_files"] == [] and report["missing_files"] == []
    assert set(report["folders"]) == {"masks", "scans", "segmentations"}
    assert report["files"] == 4  # the scan, the imported and the corrected mask, the run's mask


@pytest.mark.parametrize("folder", ["scans/2026/12", "masks/2026/12", "segmentations/2026/12"])
def test_an_old_file_no_row_names_is_an_orphan(record, folder):
    stray = _stray(f"{folder}/stray.png")
    code, report = _report()
    assert code == 1 and report["orphan_files"] == [f"{folder}/stray.png"]
    assert stray.exists()  # reported, not deleted


def test_a_young_unreferenced_file_is_not_counted(record):
    _stray("scans/2026/12/uploading.png", age_s=60)
    code, report = _report()
    assert code == 0 and report["orphan_files"] == []
    assert report["recent_unreferenced"] == ["scans/2026/12/uploading.png"]


def test_a_row_whose_file_is_gone_is_reported(record):
    scan_name = record.scan.file.name
    (Path(settings.MEDIA_ROOT) / scan_name).unlink()
    code, report = _report("--min-age", "0")
    assert code == 1
    assert report["missing_files"] == [
        {"model": "cases.Scan", "field": "file", "pk": record.scan.pk, "name": scan_name}
    ]
    code, out = _check("--min-age", "0")
    assert code == 1 and f"cases.Scan {record.scan.pk} file: {scan_name}" in out


def test_a_mask_file_shared_by_two_rows_is_reported_for_both(record):
    """The case's ground truth and its version in use name the same file."""
    record.refresh_from_db()
    name = record.ground_truth_mask.name
    (Path(settings.MEDIA_ROOT) / name).unlink()
    code, report = _report("--min-age", "0")
    assert code == 1
    assert {(r["model"], r["field"]) for r in report["missing_files"]} == {
        ("cases.Case", "ground_truth_mask"),
        ("cases.MaskVersion", "file"),
    }


def test_delete_orphan_files_deletes_only_the_orphans(record):
    referenced = {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}
    for path in referenced:  # every named file is old too: age alone must not get it deleted
        os.utime(path, (time.time() - TWO_HOURS, time.time() - TWO_HOURS))
    strays = [_stray("scans/2026/12/a.png"), _stray("segmentations/2026/12/b.png")]
    young = _stray("masks/2026/12/young.png", age_s=10)
    code, report = _report("--delete-orphan-files")
    assert code == 1 and sorted(report["deleted"]) == ["scans/2026/12/a.png", "segmentations/2026/12/b.png"]
    assert not any(p.exists() for p in strays) and young.exists()
    assert {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()} == referenced | {young}
    assert _report()[0] == 0  # and the next run finds nothing


def test_the_report_can_be_written_to_a_file(record, tmp_path):
    _stray("scans/2026/12/stray.png")
    code, out = _check("--json", str(tmp_path / "reports" / "storage.json"))
    assert code == 1 and "Orphan files (no row names them): 1" in out
    assert json.loads((tmp_path / "reports" / "storage.json").read_text())["orphan_files"] == [
        "scans/2026/12/stray.png"
    ]


def test_a_negative_min_age_is_refused():
    with pytest.raises(CommandError, match="--min-age must be 0 or more"):
        call_command("storage_check", "--min-age", "-1")
