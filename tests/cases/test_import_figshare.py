"""import_figshare on MATLAB v7.3 files written by the test in the real Figshare layout."""

import json

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from cases.models import Case, MaskSource, TypeSource
from cases.selectors import case_ground_truth_mask
from tests.cases.builders import write_figshare_mat

pytestmark = pytest.mark.django_db


def _asymmetric_slice(height=24, width=40):
    """A non-square slice with a blob in the top-right corner: any transpose or flip moves it."""
    image = np.full((height, width), 50, np.int16)
    mask = np.zeros((height, width), bool)
    mask[2:6, width - 12 : width - 3] = True
    image[mask] = 1500
    return image, mask


def _run(directory, tmp_path, name="report.json"):
    report = tmp_path / name
    call_command("import_figshare", str(directory), "--json", str(report), "--no-progress")
    return json.loads(report.read_text())


def test_mat_files_are_found_recursively_and_imported_upright(tmp_path):
    image, mask = _asymmetric_slice()
    folder = tmp_path / "brainTumorDataPublic_1-766"
    folder.mkdir()
    write_figshare_mat(folder / "12.mat", image, mask, label=1, pid="MR040240B")
    write_figshare_mat(tmp_path / "3.mat", image, mask, label=3, pid="112233")
    assert _run(tmp_path, tmp_path) == {"imported": 2, "skipped": 0, "failed": []}

    case = Case.objects.get(source_ref="figshare:12")
    assert (case.scan.width, case.scan.height) == (40, 24)
    assert (case.tumour_type, case.tumour_type_source) == ("meningioma", TypeSource.IMPORTED)
    assert case.patient.identifier == "MR040240B" and case.mask_source == MaskSource.IMPORTED
    stored_mask = case_ground_truth_mask(case=case)
    np.testing.assert_array_equal(stored_mask, mask)
    rows, cols = np.nonzero(stored_mask)
    assert rows.max() < 12 and cols.min() > 20  # top right, as in the dataset's PNGs
    with case.scan.file.open("rb") as f:
        np.testing.assert_array_equal(np.asarray(Image.open(f)), image)
    assert Case.objects.get(source_ref="figshare:3").tumour_type == "pituitary"


def test_running_it_again_imports_nothing_twice(tmp_path):
    image, mask = _asymmetric_slice()
    for n in (1, 2, 3):
        write_figshare_mat(tmp_path / f"{n}.mat", image, mask)
    assert _run(tmp_path, tmp_path, "first.json")["imported"] == 3
    assert _run(tmp_path, tmp_path, "second.json") == {"imported": 0, "skipped": 3, "failed": []}
    assert Case.objects.count() == 3


def test_bad_files_are_reported_and_the_split_file_is_skipped(tmp_path):
    image, mask = _asymmetric_slice()
    write_figshare_mat(tmp_path / "1.mat", image, mask)
    write_figshare_mat(tmp_path / "2.mat", image, mask, with_cjdata=False)
    (tmp_path / "3.mat").write_bytes((tmp_path / "1.mat").read_bytes()[:800])
    write_figshare_mat(tmp_path / "cvind.mat", image, None, with_cjdata=False)
    report = _run(tmp_path, tmp_path)
    assert (report["imported"], report["skipped"]) == (1, 1)
    errors = {item["file"].rsplit("/", 1)[-1]: item["error"] for item in report["failed"]}
    assert set(errors) == {"2.mat", "3.mat"}
    assert "cjdata" in errors["2.mat"] and "truncated" in errors["3.mat"]
    assert Case.objects.count() == 1
