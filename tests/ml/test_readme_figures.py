"""The README's shipped-model, agreement, speed and retrieval tables are typed by hand after
`make rescore`; these checks tie every figure in them to the committed JSON it was copied from, so a
stale or mistyped number fails CI.

`tests/ml/test_shipped_models.py` ties the JSON to the bundles (it re-scores the test split); this
file ties the README to the JSON, and needs neither the data nor TensorFlow.
"""

import json
import re

import pytest

from tests.conftest import REPO_ROOT

TABLE_HEADER = "| model | params | input | training"
TYPES = ("meningioma", "glioma", "pituitary")


def readme_table(header_start: str) -> tuple[str, list[list[str]]]:
    """The header line and the body rows (as lists of cells) of the README table whose header starts
    with ``header_start``."""
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return lines[start], rows


def shipped_table_rows() -> dict[str, list[str]]:
    """The README's shipped-model table as {model name: cells}, the name being the first cell's
    back-quoted word (or "ensemble")."""
    rows = {}
    for cells in readme_table(TABLE_HEADER)[1]:
        match = re.match(r"`(\w+)`", cells[0])
        rows[match.group(1) if match else cells[0].split()[0]] = cells
    return rows


def number(cell: str) -> float:
    """A table cell's figure, without the bold marks or a trailing "×"."""
    return float(cell.replace("*", "").replace("×", "").strip())


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


@pytest.mark.parametrize("row, split", [(0, "val"), (1, "test")])
def test_agreement_table_matches_the_committed_agreement_runs(row, split):
    header, rows = readme_table("| split | slices (failures)")
    cells = rows[row]
    scored = published(f"docs/results/agreement_{split}.json")
    flag = scored["flag"]
    assert f"agreement < {flag['flag_below']:g}" in header
    assert cells[1] == f"{flag['n']} ({flag['n_failures']}: {scored['failures_by_type']['glioma']} glioma)"
    assert number(cells[2]) == round(scored["spearman_rho"], 2)
    assert number(cells[3]) == round(scored["failure_auc"], 2)
    assert cells[4] == f"{flag['n_flagged']} ({100 * flag['n_flagged'] / flag['n']:.0f} %)"
    caught = round(flag["sensitivity"] * flag["n_failures"])
    assert cells[5] == f"{caught} ({100 * flag['sensitivity']:.0f} %)"
    assert cells[6] == f"{100 * flag['specificity']:.0f} %"
    assert [number(part) for part in cells[7].split("/")] == [
        round(flag["dice_flagged"], 2),
        round(flag["dice_not_flagged"], 2),
    ]


def test_the_agreement_level_in_the_readme_is_the_one_the_ensemble_ships():
    header, _ = readme_table("| split | slices (failures)")
    assert f"agreement < {published('models/ensemble.json')['agreement']['flag_below']:g}" in header


@pytest.mark.parametrize("row, weight", [(1, "0.0"), (2, "1.0"), (3, None)])
def test_retrieval_rows_match_the_committed_retrieval_run(row, weight):
    """The pipeline rows (predicted masks) of the retrieval table; the first row (ground-truth masks)
    was measured once, with an early release's case base, and has no JSON here."""
    cells = readme_table("| masks of the queries | features | mAP@10")[1][row]
    scored = published("docs/results/retrieval_test.json")
    figures = scored["by_classifier_weight"][weight] if weight else scored
    if weight is None:
        assert f"`w` = {scored['classifier_weight']:g}" in cells[0]
        assert number(cells[6]) == round(scored["query_ms_p50"])
        assert number(cells[7]) == round(scored["pipeline_ms_p50"])
    assert number(cells[2]) == round(figures["map"], 3)
    assert number(cells[3]) == round(figures["precision_at_10"], 3)
    assert number(cells[4]) == round(figures["type_accuracy"], 3)
    assert [number(part) for part in cells[5].split("/")] == [
        round(figures["type_accuracy_by_type"][t], 3) for t in TYPES
    ]


def test_retrieval_tuning_table_matches_the_committed_tuning_run():
    """Each embedding model's row: its best setting in `tune_retrieval`'s JSON and that setting's
    figures, and its figure at the default weights (w_d = 1, w_e = 0.6)."""
    _, rows = readme_table("| embedding from | best `w_d` / `w_e`")
    results = published("docs/results/retrieval_tuning.json")["results"]
    seen = set()
    for cells in rows:
        model = re.match(r"`(\w+)`", cells[0]).group(1)
        seen.add(model)
        mine = [r for r in results if r["embedding_model"].split("@")[0] == model]
        best = max(mine, key=lambda r: r["type_accuracy"])
        assert [number(part) for part in cells[1].split("/")] == [
            best["weights"]["discriminant"],
            best["weights"]["embedding"],
        ]
        assert number(cells[2]) == as_published(cells[2], best["type_accuracy"])
        assert [number(part) for part in cells[3].split("/")] == [
            round(best["type_accuracy_by_type"][t], 3) for t in TYPES
        ]
        default = next(
            r for r in mine if r["weights"] == {"discriminant": 1.0, "features": 1.0, "embedding": 0.6}
        )
        assert number(cells[4]) == as_published(cells[4], default["type_accuracy"])
    assert seen == {r["embedding_model"].split("@")[0] for r in results}


def as_published(cell: str, value: float) -> float:
    """``value`` rounded to as many decimals as the README cell shows."""
    text = cell.replace("*", "").replace("×", "").strip()
    return round(value, len(text.split(".")[1]) if "." in text else 0)


def test_speed_table_matches_the_committed_benchmark_run():
    """Every row of the README's speed table is a row of `benchmarks/segmentation.py --json`'s one run,
    and every row of that run is in the table."""
    _, rows = readme_table("| model | precision | ms/slice batch 1")
    run = published("docs/results/benchmark_segmentation.json")
    measured = {(r["model"].split()[0], r["precision"]): r for r in run["rows"]}
    seen = set()
    for cells in rows:
        match = re.match(r"`(\w+)`", cells[0])
        key = (match.group(1) if match else "seed_unet", cells[1])
        r = measured[key]
        seen.add(key)
        for cell, value in zip(
            cells[2:6], (r["ms_per_slice_b1"], r["ms_per_slice_b16"], r["peak_rss_mb"], r["x_seed_b1"])
        ):
            assert number(cell) == as_published(cell, value), (key, cell, value)
    assert seen == set(measured)


def test_encoder_screen_table_is_what_ml_runs_prints_for_the_committed_run():
    """The 256 px encoder screen's table is `python -m ml.runs`'s table of the committed JSON, row for row."""
    from ml.runs import table

    header, rows = readme_table("| bundle | encoder | params | from")
    run = published("docs/results/encoder_screen_256.json")
    expected = table(run["runs"]).splitlines()
    assert header == expected[0]
    assert ["| " + " | ".join(cells) + " |" for cells in rows] == expected[2:]
    plain, effb0 = run["runs"]
    assert (plain["encoder"], effb0["encoder"]) == ("plain", "efficientnetb0")
    assert plain["initialised_from"] is effb0["initialised_from"] is False  # both from random init
    assert plain["like"]["path"] == effb0["like"]["path"] == "models/attention_unet.json"
