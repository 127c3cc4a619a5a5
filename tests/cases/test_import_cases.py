"""import_cases on a small copy of the shared dataset: what comes in, and that nothing comes in twice."""

import csv
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from cases.models import Case, MaskSource, Patient, TypeSource
from cases.selectors import case_ground_truth_mask

pytestmark = [pytest.mark.django_db, pytest.mark.realdata]


def _import(directory, tmp_path, name="report.json", *extra):
    report = tmp_path / name
    call_command("import_cases", str(directory), "--json", str(report), "--no-progress", *extra)
    return json.loads(report.read_text())


def test_it_imports_images_masks_types_and_patients(figshare_subset, tmp_path):
    assert _import(figshare_subset, tmp_path) == {"imported": 6, "skipped": 0, "failed": []}
    with (figshare_subset / "cases.csv").open(newline="") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    assert Patient.objects.count() == len({row["pid"] for row in rows.values()})
    for case in Case.objects.select_related("patient", "scan"):
        row = rows[case.source_ref.removeprefix("figshare:")]
        assert case.tumour_type == row["label_name"] and case.tumour_type_source == TypeSource.IMPORTED
        assert case.patient.identifier == row["pid"]
        assert case.mask_source == MaskSource.IMPORTED and case.in_case_base
        expected_mask = np.asarray(Image.open(figshare_subset / "masks" / f"{row['id']}.png")) > 0
        np.testing.assert_array_equal(case_ground_truth_mask(case=case), expected_mask)
        assert (case.scan.width, case.scan.height) == (256, 256)


def test_running_it_again_imports_nothing_twice(figshare_subset, tmp_path):
    _import(figshare_subset, tmp_path, "first.json")
    assert _import(figshare_subset, tmp_path, "second.json") == {"imported": 0, "skipped": 6, "failed": []}
    assert Case.objects.count() == 6


def test_a_broken_row_is_reported_and_the_rest_imported(figshare_subset, tmp_path):
    victim = sorted((figshare_subset / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:100])
    report = _import(figshare_subset, tmp_path)
    assert report["imported"] == 5 and len(report["failed"]) == 1
    assert report["failed"][0]["file"].endswith(victim.name) and "truncated" in report["failed"][0]["error"]
    # The broken row is retried (and fails again) next time; the others are skipped.
    assert _import(figshare_subset, tmp_path, "again.json")["skipped"] == 5


def test_a_folder_without_cases_csv_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"cases\.csv not found"):
        call_command("import_cases", str(tmp_path), "--no-progress")
