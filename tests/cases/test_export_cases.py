"""export_cases writes the dataset layout back out, and importing it reproduces masks and labels exactly."""

import csv
import json

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from cases.models import Case
from cases.services import case_create
from tests.cases.builders import png_bytes, synthetic_slice, write_figshare_mat

pytestmark = pytest.mark.django_db


def _rows(directory):
    with (directory / "cases.csv").open(newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def _png(path):
    return np.asarray(Image.open(path))


@pytest.mark.realdata
def test_shared_layout_round_trips_exactly(figshare_subset, tmp_path):
    call_command("import_cases", str(figshare_subset), "--no-progress")
    out = tmp_path / "export"
    call_command("export_cases", str(out), "--no-progress", "--json", str(tmp_path / "export.json"))
    assert json.loads((tmp_path / "export.json").read_text()) == {"exported": 6, "skipped": 0, "failed": []}

    source, exported = _rows(figshare_subset), _rows(out)
    assert exported.keys() == source.keys()
    for case_id, row in source.items():
        for column in ("label", "label_name", "pid", "patient_group"):
            assert exported[case_id][column] == row[column], column
        for folder in ("images", "masks"):
            np.testing.assert_array_equal(
                _png(out / folder / f"{case_id}.png"), _png(figshare_subset / folder / f"{case_id}.png")
            )
        mask = _png(out / "masks" / f"{case_id}.png")
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert int(exported[case_id]["mask_pixels_orig"]) == int((mask > 0).sum())

    # And back in, into an empty record: the same cases again.
    Case.objects.all().delete()
    call_command("import_cases", str(out), "--no-progress")
    again = tmp_path / "again"
    call_command("export_cases", str(again), "--no-progress")
    assert _rows(again) == exported
    for case_id in source:
        np.testing.assert_array_equal(
            _png(again / "masks" / f"{case_id}.png"), _png(out / "masks" / f"{case_id}.png")
        )


def test_16bit_scans_are_exported_as_8bit_and_unmasked_cases_are_skipped(tmp_path, owner):
    image = np.zeros((16, 24), np.int16)
    image[3:6, 15:20] = 3000
    write_figshare_mat(tmp_path / "5.mat", image, image > 0, label=2, pid="MR1")
    call_command("import_figshare", str(tmp_path), "--no-progress")
    case_create(image_file=png_bytes(synthetic_slice()[0]), filename="nomask.png", user=owner)
    out = tmp_path / "export"
    call_command("export_cases", str(out), "--no-progress", "--json", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == {"exported": 1, "skipped": 1, "failed": []}
    exported = _png(out / "images" / "5.png")
    assert exported.dtype == np.uint8 and exported.max() == 255 and exported[0, 0] == 0
    np.testing.assert_array_equal(_png(out / "masks" / "5.png") > 0, image > 0)
    assert _rows(out)["5"]["label_name"] == "glioma"
