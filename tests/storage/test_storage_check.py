"""``manage.py storage_check``: orphan files and rows whose file is missing, reported both ways; it deletes
only with --delete-orphan-files, and never a file that a row names."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from cases.review import case_mask_correct
from segmentation.testing import make_case, synthetic_slice
from tests.media import stored_names
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


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


def _stray(name: str) -> str:
    """A file that no row names, stored now."""
    return default_storage.save(name, ContentFile(b"not named by any row"))


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
def test_an_old_file_no_row_names_is_an_orphan(record, folder, two_hours_later):
    stray = _stray(f"{folder}/stray.png")
    code, report = _report()
    assert code == 1 and report["orphan_files"] == [stray] == [f"{folder}/stray.png"]
    assert default_storage.exists(stray)  # reported, not deleted


def test_a_young_unreferenced_file_is_not_counted(record):
    _stray("scans/2026/12/uploading.png")
    code, report = _report()
    assert code == 0 and report["orphan_files"] == []
    assert report["recent_unreferenced"] == ["scans/2026/12/uploading.png"]


def test_a_row_whose_file_is_gone_is_reported(record):
    scan_name = record.scan.file.name
    default_storage.delete(scan_name)
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
    default_storage.delete(name)
    code, report = _report("--min-age", "0")
    assert code == 1
    assert {(r["model"], r["field"]) for r in report["missing_files"]} == {
        ("cases.Case", "ground_truth_mask"),
        ("cases.MaskVersion", "file"),
    }


def test_delete_orphan_files_deletes_only_the_orphans(record, two_hours_later):
    referenced = stored_names()  # every named file is two hours old too: age alone must not get it deleted
    strays = [_stray("scans/2026/12/a.png"), _stray("segmentations/2026/12/b.png")]
    code, report = _report("--delete-orphan-files")
    assert code == 1 and sorted(report["deleted"]) == strays
    assert stored_names() == referenced
    assert _report()[0] == 0  # and the next run finds nothing


def test_delete_orphan_files_spares_a_young_file(record):
    young = _stray("masks/2026/12/young.png")
    code, report = _report("--delete-orphan-files")
    assert code == 0 and report["deleted"] == [] and report["recent_unreferenced"] == [young]
    assert default_storage.exists(young)


def test_the_report_can_be_written_to_a_file(record, tmp_path, two_hours_later):
    _stray("scans/2026/12/stray.png")
    code, out = _check("--json", str(tmp_path / "reports" / "storage.json"))
    assert code == 1 and "Orphan files (no row names them): 1" in out
    assert json.loads((tmp_path / "reports" / "storage.json").read_text())["orphan_files"] == [
        "scans/2026/12/stray.png"
    ]


def test_a_negative_min_age_is_refused():
    with pytest.raises(CommandError, match="--min-age must be 0 or more"):
        call_command("storage_check", "--min-age", "-1")
