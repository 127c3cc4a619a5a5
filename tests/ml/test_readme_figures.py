"""The README's shipped-model table is typed by hand after `make rescore`; these checks tie every figure
in it to the committed JSON it was copied from, so a stale or mistyped number fails CI.

`tests/ml/test_shipped_models.py` ties the JSON to the bundles (it re-scores the test split); this
file ties the README to the JSON, and needs neither the data nor TensorFlow.
"""

import json
import re

import pytest

from tests.conftest import REPO_ROOT

TABLE_HEADER = "| model | params | input | training"
TYPES = ("meningioma", "glioma", "pituitary")


def shipped_table_rows() -> dict[str, list[str]]:
    """The README's shipped-model table as {model name: cells}, the name being the first cell's
    back-quoted word (or "ensemble")."""
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.match(r"`(\w+)`", cells[0])
        rows[match.group(1) if match else cells[0].split()[0]] = cells
    return rows


def number(cell: str) -> float:
    """A table cell's figure, without the bold marks."""
    return float(cell.replace("*", "").strip())


def published(path: str) -> dict:
    return json.loads((REPO_ROOT / path).read_text())


def test_the_table_lists_every_shipped_model_and_the_ensemble():
    assert set(shipped_table_rows()) == {"unet", "attention_unet", "unet_plus_plus", "ensemble"}


@pytest.mark.parametrize("name", ["unet", "attention_unet", "unet_plus_plus", "ensemble"])
def test_test_split_figures_match_the_committed_evaluation(name):
    cells = shipped_table_rows()[name]
    scored = published("docs/results/segmentation_test.json")["models"][name]
    assert number(cells[5]) == round(scored["dice_mean"], 3)
    assert number(cells[6]) == round(scored["iou_mean"], 3)
    by_type = [number(part) for part in cells[7].split("/")]
    assert by_type == [round(scored["dice_by_type"][t], 3) for t in TYPES]
    assert number(cells[8]) == round(scored["ms_per_slice"])


@pytest.mark.parametrize("name", ["unet", "attention_unet", "unet_plus_plus"])
def test_size_and_validation_dice_match_the_bundle_metadata(name):
    cells = shipped_table_rows()[name]
    metadata = published(f"models/{name}.json")
    assert cells[1] == f"{metadata['parameters'] / 1e6:.2f} M"
    assert cells[2] == f"{metadata['input_size']} px"
    spec = metadata["spec"]
    assert f"{spec['base_filters']}" in cells[0]
    if spec["depth"] != 4:  # the default depth goes unsaid; any other is named
        assert f"depth {spec['depth']}" in cells[0]
    assert number(cells[4]) == round(metadata["metrics"]["val"]["dice_mean"], 3)


def test_the_ensemble_validation_dice_matches_its_metadata():
    cells = shipped_table_rows()["ensemble"]
    assert number(cells[4]) == round(published("models/ensemble.json")["metrics"]["val"]["dice_mean"], 3)
