"""The docs a newcomer reads are current and whole.

- The pages that carry figures (docs/models.md, docs/benchmarks.md, README.md's headline block, and the
  generated blocks of docs/notebook.md, docs/training.md and docs/model-history.md) are what
  ``python -m docs.build`` writes from the committed JSON: a stale page or block fails here, and so does a
  score typed by hand outside a block in a hand-written page or CHANGELOG.md, anywhere but in the model
  history's historical record.
- Their tables say what the JSON says (the generator is checked against the data it reads), and the data
  agree with each other where two files hold the same fact.
- README.md stays short, names the test command, and every relative link in it and in docs/ resolves.

Needs neither the dataset, nor TensorFlow, nor a database.
"""

import argparse
import importlib
import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from docs import build
from ml.runs import table as runs_table
from tests.conftest import REPO_ROOT

TYPES = ("meningioma", "glioma", "pituitary")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def published(path: str) -> dict | list:
    return json.loads((REPO_ROOT / path).read_text())


def table(page: str, header_start: str) -> tuple[str, list[list[str]]]:
    """The header line and the body rows (as lists of cells) of the table in ``page`` whose header starts
    with ``header_start``."""
    lines = (REPO_ROOT / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return lines[start], rows


def number(cell: str) -> float:
    """A table cell's figure, without bold marks, a trailing times sign or a Unicode minus."""
    return float(cell.replace("*", "").replace("\u00d7", "").replace("\u2212", "-").strip())


def as_published(cell: str, value: float) -> float:
    """``value`` rounded to as many decimals as the cell shows."""
    text = cell.replace("*", "").replace("\u00d7", "").strip()
    return round(value, len(text.split(".")[1]) if "." in text else 0)


# === The generated pages are current ===


def test_the_generator_writes_exactly_the_committed_pages(tmp_path):
    assert build.main(["--output-dir", str(tmp_path)]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(build.pages())
    stale = [path for path in written if (tmp_path / path).read_text() != (REPO_ROOT / path).read_text()]
    assert stale == [], f"stale: {stale}; run `python -m docs.build` (make docs) and commit the result"


def test_check_mode_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    for path, text in build.pages().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "docs/models.md").write_text("typed by hand\n")
    monkeypatch.setattr(build, "ROOT", tmp_path)
    monkeypatch.setattr(build, "pages", lambda: dict.fromkeys(["docs/models.md", "README.md"], "fresh\n"))
    assert build.main(["--check"]) == 1
    assert "docs/models.md is stale" in capsys.readouterr().err


def test_every_result_json_is_on_the_benchmarks_page_with_its_command():
    page = (REPO_ROOT / "docs/benchmarks.md").read_text()
    for path in sorted((REPO_ROOT / "docs/results").glob("*.json")):
        assert f"`docs/results/{path.name}`" in page, path.name
    for name, (_, command) in build.RESULTS.items():
        assert (REPO_ROOT / "docs/results" / name).is_file(), f"RESULTS names a missing file: {name}"
        assert command is None or name in command, f"{name}: its command does not write it"


def test_a_result_json_without_a_command_stops_the_generator(tmp_path):
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs/results/new_benchmark.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"new_benchmark\.json"):
        build.benchmarks_page(tmp_path)


def test_every_bundle_has_a_model_card():
    page = (REPO_ROOT / "docs/models.md").read_text()
    bundles = [*(REPO_ROOT / "models").glob("*.json"), *(REPO_ROOT / "models/type_classifier").glob("*.json")]
    assert len(bundles) >= 5
    for path in bundles:
        assert f"## `{path.stem}`" in page, path


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("module", ["docs.build", "docs.screenshot"])
def test_the_docs_commands_explain_themselves_and_every_option(module, monkeypatch):
    parsers = []

    def capture(self, *args, **kwargs):
        parsers.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parsed):
        importlib.import_module(module).main([])
    (parser,) = parsers
    assert parser.description
    assert [a.dest for a in parser._actions if not a.help] == []


# === The README ===


def readme() -> str:
    return (REPO_ROOT / "README.md").read_text()


def test_the_readme_is_at_most_200_lines():
    assert len(readme().splitlines()) <= 200


def test_the_readme_gives_the_two_commands():
    text = readme()
    assert "make test" in text
    assert "make demo" in text


def test_the_readme_says_it_is_not_a_medical_device():
    assert "not a medical device" in readme()


def markdown_files() -> list[Path]:
    return [
        REPO_ROOT / "README.md",
        REPO_ROOT / "CONTRIBUTING.md",
        REPO_ROOT / "CHANGELOG.md",
        *sorted((REPO_ROOT / "docs").glob("*.md")),
    ]


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists() or (anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)):
            broken.append(target)
    assert broken == []


# === The tables say what the JSON says ===

SHIPPED = "| model | params | input | training"


def shipped_rows() -> dict[str, list[str]]:
    rows = {}
    for cells in table("docs/models.md", SHIPPED)[1]:
        match = re.match(r"`(\w+)`", cells[0])
        rows[match.group(1) if match else cells[0].split()[0]] = cells
    return rows


def test_the_model_table_lists_every_shipped_model_and_the_ensemble():
    assert set(shipped_rows()) == {"unet", "attention_unet", "unet_plus_plus", "ensemble"}


@pytest.mark.parametrize("name", ["unet", "attention_unet", "unet_plus_plus", "ensemble"])
def test_test_split_figures_match_the_committed_evaluation(name):
    cells = shipped_rows()[name]
    scored = published("docs/results/segmentation_test.json")["models"][name]
    assert number(cells[5]) == round(scored["dice_mean"], 3)
    assert number(cells[6]) == round(scored["iou_mean"], 3)
    assert [number(part) for part in cells[7].split("/")] == [
        round(scored["dice_by_type"][t], 3) for t in TYPES
    ]
    assert number(cells[8]) == round(scored["ms_per_slice"])


@pytest.mark.parametrize("name", ["unet", "attention_unet", "unet_plus_plus"])
def test_size_and_validation_dice_match_the_bundle_metadata(name):
    cells = shipped_rows()[name]
    metadata = published(f"models/{name}.json")
    assert cells[1] == f"{metadata['parameters'] / 1e6:.2f} M"
    assert cells[2] == f"{metadata['input_size']} px"
    spec = metadata["spec"]
    assert f"{spec['base_filters']} base filters" in cells[0]
    assert f"depth {spec['depth']}" in cells[0]
    assert number(cells[4]) == round(metadata["metrics"]["val"]["dice_mean"], 3)


def test_the_ensemble_validation_dice_matches_its_metadata():
    cells = shipped_rows()["ensemble"]
    assert number(cells[4]) == round(published("models/ensemble.json")["metrics"]["val"]["dice_mean"], 3)


def test_every_shipped_card_says_how_its_weights_started():
    page = (REPO_ROOT / "docs/models.md").read_text()
    for path in (REPO_ROOT / "models").glob("*.json"):
        meta = json.loads(path.read_text())
        if meta.get("encoder_weights") == "none":
            assert meta["encoder_weights_note"] in page
    assert "ImageNet weights could not be downloaded" in page


@pytest.mark.parametrize("row, split", [(0, "val"), (1, "test")])
def test_agreement_table_matches_the_committed_agreement_runs(row, split):
    header, rows = table("docs/benchmarks.md", "| split | slices (failures)")
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


def test_the_agreement_level_published_is_the_one_the_ensemble_ships():
    header, _ = table("docs/benchmarks.md", "| split | slices (failures)")
    shipped = published("models/ensemble.json")["agreement"]["flag_below"]
    assert f"agreement < {shipped:g}" in header
    for split in ("val", "test"):
        assert published(f"docs/results/agreement_{split}.json")["flag"]["flag_below"] == shipped


@pytest.mark.parametrize("row, weight", [(0, "0.0"), (1, "1.0"), (2, None)])
def test_retrieval_rows_match_the_committed_retrieval_run(row, weight):
    cells = table("docs/benchmarks.md", "| masks of the queries | mAP@10")[1][row]
    scored = published("docs/results/retrieval_test.json")
    figures = scored["by_classifier_weight"][weight] if weight else scored
    if weight is None:
        assert f"`w` = {scored['classifier_weight']:g}" in cells[0]
        assert number(cells[5]) == round(scored["query_ms_p50"])
        assert number(cells[6]) == round(scored["pipeline_ms_p50"])
    assert number(cells[1]) == round(figures["map"], 3)
    assert number(cells[2]) == round(figures["precision_at_10"], 3)
    assert number(cells[3]) == round(figures["type_accuracy"], 3)
    assert [number(part) for part in cells[4].split("/")] == [
        round(figures["type_accuracy_by_type"][t], 3) for t in TYPES
    ]


def test_the_published_classifier_weight_is_the_one_the_app_uses():
    assert published("docs/results/retrieval_test.json")["classifier_weight"] == (
        settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT
    )


def test_retrieval_tuning_table_matches_the_committed_tuning_run():
    """Each embedding model's row: its best setting in `tune_retrieval`'s JSON and that setting's
    figures, and its figure at the weights in use."""
    _, rows = table("docs/benchmarks.md", "| embedding from | best `w_d` / `w_e`")
    results = published("docs/results/retrieval_tuning.json")["results"]
    in_use = published("docs/results/retrieval_test.json")["weights"]
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
        default = next(r for r in mine if r["weights"] == in_use)
        assert number(cells[4]) == as_published(cells[4], default["type_accuracy"])
    assert seen == {r["embedding_model"].split("@")[0] for r in results}


def test_speed_table_matches_the_committed_benchmark_run():
    """Every row of the speed table is a row of `benchmarks/segmentation.py --json`'s one run, and every
    row of that run is in the table."""
    _, rows = table("docs/benchmarks.md", "| model | precision | ms/slice batch 1")
    run = published("docs/results/benchmark_segmentation.json")
    measured = {(r["model"].split()[0], r["precision"]): r for r in run["rows"]}
    seen = set()
    for cells in rows:
        match = re.match(r"`(\w+)`", cells[0])
        key = (match.group(1) if match else "seed_unet", cells[1])
        r = measured[key]
        seen.add(key)
        for cell, value in zip(
            cells[2:6],
            (r["ms_per_slice_b1"], r["ms_per_slice_b16"], r["peak_rss_mb"], r["x_seed_b1"]),
            strict=True,
        ):
            assert number(cell) == as_published(cell, value), (key, cell, value)
    assert seen == set(measured)


def test_encoder_screen_table_is_what_ml_runs_prints_for_the_committed_run():
    """The 256 px encoder screen's table is `python -m ml.runs`'s table of the committed JSON, row for row."""
    header, rows = table("docs/benchmarks.md", "| bundle | encoder | params | from")
    run = published("docs/results/encoder_screen_256.json")
    expected = runs_table(run["runs"]).splitlines()
    assert header == expected[0]
    assert ["| " + " | ".join(cells) + " |" for cells in rows] == expected[2:]
    plain, effb0 = run["runs"]
    assert (plain["encoder"], effb0["encoder"]) == ("plain", "efficientnetb0")
    assert plain["initialised_from"] is effb0["initialised_from"] is False  # both from random init
    assert plain["like"]["path"] == effb0["like"]["path"] == "models/attention_unet.json"


def test_the_readme_headline_figures_are_the_committed_ones():
    text = readme()
    tested = published("docs/results/segmentation_test.json")["models"]
    retrieval = published("docs/results/retrieval_test.json")
    block = " ".join(text[text.index(build.HEADLINE_START) : text.index(build.HEADLINE_END)].split())
    assert f"mean Dice {tested['ensemble']['dice_mean']:.3f} for the ensemble" in block
    assert f"mAP@10 {retrieval['map']:.3f}" in block


# === Figures in the hand-written pages come from JSON too ===

# A score typed by hand looks like 0.745; one inside a generated block was written by docs.build.
TYPED_SCORE = re.compile(r"(?<![\w.])0\.\d{3,}(?!\d)")
# Pages written whole by the generator.
NOT_HAND_WRITTEN = {"models.md", "benchmarks.md"}
# The one place a figure typed by hand may stay: the model history's record of runs whose outputs were never
# committed, each figure with the command that re-creates it. It runs to the next section of the page.
HISTORICAL = ("docs/model-history.md", "## The historical record")
# Figures that are not our measurements: a constant in a formula, the papers the targets come from.
NOT_MEASURED = {
    "docs/architecture.md": ["1/(d + 0.001)"],
    "docs/notebook.md": ["mAP 0.9468", "accuracy 0.9128"],
}


def hand_written_pages() -> list[Path]:
    pages = [p for p in sorted((REPO_ROOT / "docs").glob("*.md")) if p.name not in NOT_HAND_WRITTEN]
    return [*pages, REPO_ROOT / "CHANGELOG.md"]


def without_the_historical_record(path: Path, text: str) -> str:
    page, heading = HISTORICAL
    if str(path.relative_to(REPO_ROOT)) != page:
        return text
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[:start] + (text[end:] if end != -1 else "")


@pytest.mark.parametrize("path", hand_written_pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_score_is_typed_outside_a_generated_block(path):
    text = without_the_historical_record(path, build.BLOCK.sub("", path.read_text()))
    for allowed in NOT_MEASURED.get(str(path.relative_to(REPO_ROOT)), []):
        text = text.replace(allowed, "")
    typed = [
        text[max(0, m.start() - 40) : m.end() + 10].replace("\n", " ") for m in TYPED_SCORE.finditer(text)
    ]
    assert typed == [], (
        "a figure typed by hand: write it from its JSON in a generated block (docs/build.py, BLOCKS), or, "
        "if no JSON holds it, keep it in the model history's historical record with the command that "
        "re-creates it"
    )


def test_the_historical_record_is_one_section_and_others_are_checked(tmp_path):
    page, heading = HISTORICAL
    assert (REPO_ROOT / page).read_text().count(f"\n{heading}\n") == 1
    typed = "# History\n\n## Tables\n\n0.745\n\n" + heading + "\n\n0.612\n\n## Later\n\n0.733\n"
    kept = without_the_historical_record(REPO_ROOT / page, typed)
    assert TYPED_SCORE.findall(kept) == ["0.745", "0.733"]


def test_a_figure_edited_by_hand_in_a_generated_block_is_rewritten(tmp_path):
    for folder in ("models", "docs/results"):
        (tmp_path / folder).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder).symlink_to(REPO_ROOT / folder)
    committed = (REPO_ROOT / "docs/notebook.md").read_text()
    block = build.BLOCK.search(committed)
    edited = committed[: block.start(2)] + block.group(2).replace("0.", "0.9", 1) + committed[block.end(2) :]
    assert edited != committed
    (tmp_path / "docs/notebook.md").write_text(edited)
    assert build.fill(tmp_path, "docs/notebook.md", build.BLOCKS["docs/notebook.md"]) == committed


def test_a_block_the_generator_does_not_write_stops_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/page.md").write_text("<!-- generated:typed -->0.745<!-- /generated:typed -->\n")
    with pytest.raises(SystemExit, match="typed"):
        build.fill(tmp_path, "docs/page.md", {})


def test_every_release_json_feeds_a_table_of_the_model_history():
    releases = range(1, len(build.RELEASES) + 1)
    kept = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs/results/releases").rglob("*.json")}
    used = {build.RELEASE_JSON.format(n) for n in releases}
    used |= {build.MODELS_JSON.format(n, name) for n in releases for name in build.MEMBERS}
    used |= {build.RETRIEVAL_JSON.format(suffix) for suffix in build.RETRIEVALS}
    used |= {build.AGREEMENT_JSON.format(release) for release in build.AGREEMENTS}
    used.add(build.EARLIER_TUNING[1])
    assert kept == used
    latest = published(build.RELEASE_JSON.format(len(build.RELEASES)))["models"]
    now = published("docs/results/segmentation_test.json")["models"]
    # Re-scored under another runtime (OpenVINO rather than TensorFlow), float32 rounding moves a mean by
    # about 1e-6; a new model moves it by far more.
    assert set(latest) == set(now)
    for name, scored in now.items():
        assert scored["dice_mean"] == pytest.approx(latest[name]["dice_mean"], abs=1e-4), (
            f"the test figures moved ({name}): a new release belongs in RELEASES (docs/build.py) "
            "with its JSON"
        )
    for name in build.MEMBERS:
        saved = published(build.MODELS_JSON.format(len(build.RELEASES), name))
        shipped = published(f"models/{name}.json")
        assert (saved["metrics"], saved["threshold"]) == (shipped["metrics"], shipped["threshold"]), (
            f"models/{name}.json was recalibrated: a new release belongs in RELEASES with its bundles' JSONs"
        )


@pytest.mark.parametrize(
    ("missed", "dice", "verdict"),
    [
        (16, 0.750, "It meets both targets"),
        (17, 0.750, "It misses the target of at most 16 missed slices on"),
        (10, 0.745, "It misses a mean Dice above 0.745 on"),
    ],
)
def test_the_fold_ensemble_is_judged_against_the_served_ensembles_targets(tmp_path, missed, dice, verdict):
    served = published("docs/results/segmentation_test.json")
    assert served["models"]["ensemble"]["misses"]["n"] // 2 == 16  # the targets the cases below test
    scored = {
        **served["models"]["ensemble"],
        "dice_mean": round(served["models"]["ensemble"]["dice_mean"], 3),
    }
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    served["models"]["ensemble"] = scored
    (tmp_path / "docs/results/segmentation_test.json").write_text(json.dumps(served))
    folds = {
        **scored,
        "dice_mean": dice,
        "tta_scales": {f"unet_cv{k}": [1.0] for k in range(5)},
        "misses": {**scored["misses"], "n": missed},
    }
    (tmp_path / "docs/results/cv/fold_ensemble_test.json").write_text(
        json.dumps({"models": {"ensemble": folds}})
    )
    text = build.training_cv_ensemble(tmp_path)
    words = " ".join(text.split())
    assert verdict in words
    assert f"| the 5 fold U-Nets | {dice:.3f} (" in text
    assert f"{missed} missed slices against the served ensemble's 32" in words


def test_the_type_vote_by_fold_sets_the_served_pair_beside_the_in_sample_cross_validation(tmp_path):
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    for name in ("retrieval_test.json", "retrieval_tuning.json"):
        (tmp_path / "docs/results" / name).write_text((REPO_ROOT / "docs/results" / name).read_text())
    served = published("docs/results/retrieval_test.json")
    assert not (tmp_path / build.TYPE_VOTE_BY_FOLD).exists()
    assert "Not measured yet" in build.training_cv_type_vote(tmp_path)
    before = "".join(build.headline_type_cv(tmp_path, served))
    assert "the similar cases' vote alone with the served weights" in before  # in sample, until measured

    def scored(folds, meningioma):
        return {
            "type_accuracy_by_fold": folds,
            "type_accuracy": sum(folds) / len(folds),
            "type_accuracy_by_type": {"meningioma": meningioma, "glioma": 0.95, "pituitary": 0.97},
        }

    alone = scored([0.90, 0.92, 0.88, 0.94, 0.86], 0.70)
    share = str(float(served["classifier_weight"]))
    result = {**alone, "weights": served["weights"], "by_classifier_weight": {"0.0": alone}}
    result["by_classifier_weight"][share] = scored([0.93, 0.95, 0.91, 0.97, 0.89], 0.80)
    other = {**alone, "weights": {**served["weights"], "embedding": 0.0}}
    (tmp_path / build.TYPE_VOTE_BY_FOLD).write_text(
        json.dumps({"n_slices": 2020, "results": [other, result]})
    )
    text = build.training_cv_type_vote(tmp_path)
    words = " ".join(text.split())
    bold = f"| **{served['weights']['embedding']:g}** | **{float(share):g}** | **0.930 ± 0.032** |"
    assert bold in text and text.count("**") == 2 * 6  # the served pair's row alone
    assert "| 0 | 0 (the vote alone) | 0.900 ± 0.032 |" in text
    in_sample = build.in_sample_type_cv(REPO_ROOT, served)["type_accuracy_by_fold"]
    assert "): 0.930 by fold, the best pair scored, meningioma 0.800;" in words
    assert (
        f"the vote alone with the served weights 0.900, against {sum(in_sample) / len(in_sample):.3f}"
        in words
    )

    headline = "".join(build.headline_type_cv(tmp_path, served))
    assert (
        "each fold outlined and typed by models that never saw it, the served suggestion: 0.930 ± 0.032"
        in headline
    )
    assert "meningioma 0.800" in headline and "2020 development slices" in headline


def test_the_nested_calibration_table_sets_each_folds_own_choice_beside_the_others(tmp_path):
    assert "Not measured yet" in build.training_cv_calibration(tmp_path)

    def choice(dice, missed, threshold, keep_by="peak"):
        return {
            "dice": dice,
            "missed": missed,
            "threshold": threshold,
            "tta": True,
            "tta_scales": [1.0, 1.15],
            "postprocess": {"keep_largest": True, "keep_by": keep_by},
        }

    report = {
        "runtime": "openvino",
        "candidates": 234,
        "bundles": [
            {
                "bundle": "unet_cv0",
                "fold": 0,
                "n": 400,
                "in_sample": choice(0.72, 33, 0.2),
                "nested": choice(0.71, 35, 0.3),
            },
            {
                "bundle": "unet_cv1",
                "fold": 1,
                "n": 400,
                "in_sample": choice(0.75, 22, 0.2),
                "nested": choice(0.74, 20, 0.25, "area"),
            },
        ],
    }
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    (tmp_path / build.CALIBRATION_NESTED).write_text(json.dumps(report))
    text = build.training_cv_calibration(tmp_path)
    words = " ".join(text.split())
    row = "| 1 | `unet_cv1` | 0.750, 22 | 0.20, flip on, zoom 1/1.15, the highest-peak region | 0.740, 20 |"
    assert row + " 0.25, flip on, zoom 1/1.15, the largest region |" in text
    assert "Dice 0.735 ± 0.021 with each fold's own choice, 0.725 ± 0.021 with the other folds'" in words
    assert f"the difference {build.MINUS}0.010 per fold" in words and "Missed slices: 55 and 55." in words


def test_an_idea_is_set_against_the_shipped_recipe_fold_by_fold_and_kept_out_of_its_totals(tmp_path):
    def fold_bundle(name, fold, dice, glioma, **changed):
        return {
            "name": name,
            "architecture": "unet",
            "spec": {"architecture": "unet"},
            "training": {
                "split": {"fold": fold, "folds": 5},
                "epochs_done": 35 if changed else 23,
                "like": {"path": "models/unet.json", "overridden": sorted(changed)},
                **changed,
            },
            "metrics": {
                "val": {"dice_mean": dice, "dice_by_type": {**dict.fromkeys(TYPES, 0.8), "glioma": glioma}}
            },
        }

    def scored(name, missed):
        misses = {"n": missed, "of": 400, "how": {"empty": 0, "elsewhere": missed, "grazing": 0}}
        misses["dice_mean_of_the_rest"] = 0.8
        return {"cleanup": "model", "models": {name: {"dice_mean": 0.7, "misses": misses}}}

    (tmp_path / "models/cv").mkdir(parents=True)
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    bundles = [
        fold_bundle("unet_cv2", 2, 0.74, 0.60),
        fold_bundle("unet_cv3", 3, 0.70, 0.55),
        fold_bundle("unet_th_cv3", 3, 0.72, 0.61, type_head=0.3),
    ]
    for meta, missed in zip(bundles, (20, 30, 24), strict=True):
        (tmp_path / f"models/cv/{meta['name']}.json").write_text(json.dumps(meta))
        (tmp_path / f"docs/results/cv/{meta['name']}_val_cleanup_model.json").write_text(
            json.dumps(scored(meta["name"], missed))
        )

    words = " ".join(build.training_cv(tmp_path).split())
    assert "like `models/unet.json`, with `type_head` 0.3: 1 of 5 folds trained." in words
    assert (
        "Against the shipped recipe on the same fold, each bundle calibrated on its own fold: fold 3 "
        "(23 → 35 epochs): Dice 0.700 → 0.720 (+0.020), glioma 0.550 → 0.610, missed 30 → 24. "
        "One fold is not yet" in words
    )
    misses = " ".join(build.training_cv_misses(tmp_path).split())
    assert "| `unet_th_cv3` | the bundle's own | 0.700 | 24 of 400 |" in misses  # listed

    # With both training logs, the best validation Dice of the first epochs both ran, as each logged it.
    base = [f"{e},0.9,{0.5 + e / 100}" for e in range(23)]  # best 0.72, the 23rd epoch
    joint = [f"{e},0.9,{0.4 + e / 100}" for e in range(35)]  # 0.62 after 23 epochs, 0.74 after 35
    (tmp_path / "models/cv/unet_cv3.log.csv").write_text("\n".join(["epoch,dice,val_dice", *base]))
    (tmp_path / "models/cv/unet_th_cv3.log.csv").write_text("\n".join(["epoch,dice,val_mask_dice", *joint]))
    words = " ".join(build.training_cv(tmp_path).split())
    assert (
        "missed 30 → 24; at equal epochs (the first 23 of each, the training logs' validation Dice before "
        "calibration) the best 0.720 → 0.620. One fold is not yet" in words
    )
    assert "Over the shipped recipe's 2 folds scored: the bundle's own: mean Dice 0.700, 50 of 800" in misses


def test_a_fold_classifier_trained_again_is_set_beside_the_first_training_of_its_fold(tmp_path):
    folder = tmp_path / "models/cv/type_classifier"
    folder.mkdir(parents=True)

    def bundle(name: str, fold: int, accuracy: float, meningioma: float, **training) -> None:
        meta = {
            "name": name,
            "training": {
                "split": {"fold": fold, "folds": 5, "seed": 42},
                "type_weights": {},
                "epochs_done": 10,
                "train_seconds": 600,
                "precision": "fp32",
                **training,
            },
            "metrics": {
                "val": {
                    "accuracy": accuracy,
                    "accuracy_by_type": {"meningioma": meningioma, "glioma": 0.9, "pituitary": 0.9},
                }
            },
        }
        (folder / f"{name}.json").write_text(json.dumps(meta))

    bundle("type_classifier_cv0", 0, 0.95, 0.97)
    bundle("type_classifier_cv1", 1, 0.92, 0.83)
    bundle("type_classifier_cv0_w", 0, 0.94, 0.99, type_weights={"meningioma": 2})
    assert "Against the same recipe's first training" not in build.training_cv_classifier(tmp_path)
    bundle("type_classifier_cv0_s7", 0, 0.953, 0.863, init_seed=7)
    words = " ".join(build.training_cv_classifier(tmp_path).split())
    assert (
        "Classifier, every slice drawn alike, from another initialisation (`--init-seed 7`): 1 of 5" in words
    )
    assert (
        "Against the same recipe's first training on the same patients, nothing changed but the "
        "initialisation (a typing idea's gain smaller than this is not told apart from a second run): "
        "fold 0: accuracy 0.950 → 0.953, meningioma 0.970 → 0.863." in words
    )
    assert words.count("Against the same recipe's first training") == 1  # not for the class-balanced set


def test_a_joint_segmenters_type_head_is_its_own_classifier_recipe():
    alone = {"training": {"type_weights": {"meningioma": 2.0}}}
    joint = {"training": {"type_weights": {}, "joint_segmenter": {"name": "unet_th_cv3", "type_head": 0.3}}}
    assert build.classifier_recipe(alone) == "meningioma drawn 2 times as often"
    again = {"training": {"type_weights": {}, "init_seed": 7, "split": {"seed": 42}}}
    assert (
        build.classifier_recipe(again)
        == "every slice drawn alike, from another initialisation (`--init-seed 7`)"
    )
    assert build.classifier_recipe({"training": {"init_seed": 42, "split": {"seed": 42}}}) == (
        "every slice drawn alike"
    )
    assert build.classifier_recipe(joint) == (
        "the type head of a segmenter trained with it (`--type-head 0.3`), every slice drawn alike"
    )


@pytest.mark.parametrize(
    ("suffix", "training", "label", "recipe"),
    [
        ("_w", {"type_weights": {"meningioma": 2}}, "class-balanced", "meningioma drawn 2 times as often"),
        (
            "_r",
            {"tumour_region": True},
            "outline-reading",
            "every slice drawn alike, looking at the tumour's outline too (`--tumour-region`)",
        ),
    ],
)
def test_a_variant_type_vote_is_set_beside_the_plain_one_share_by_share(
    tmp_path, suffix, training, label, recipe
):
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    (tmp_path / "models/cv/type_classifier").mkdir(parents=True)
    for name in ("retrieval_test.json", "retrieval_tuning.json"):
        (tmp_path / "docs/results" / name).write_text((REPO_ROOT / "docs/results" / name).read_text())
    served = published("docs/results/retrieval_test.json")
    share = float(served["classifier_weight"])

    def vote(by_share: dict, classifiers: list[str]) -> str:
        shares = {
            str(s): {
                "type_accuracy_by_fold": folds,
                "type_accuracy": sum(folds) / len(folds),
                "type_accuracy_by_type": {"meningioma": men, "glioma": 0.95, "pituitary": 0.97},
            }
            for s, (folds, men) in by_share.items()
        }
        result = {**shares["0.0"], "weights": served["weights"], "by_classifier_weight": shares}
        return json.dumps({"n_slices": 2020, "classifier_folds": classifiers, "results": [result]})

    plain = {0.0: ([0.90, 0.92, 0.88, 0.94, 0.86], 0.70), share: ([0.93, 0.95, 0.91, 0.97, 0.89], 0.80)}
    (tmp_path / build.TYPE_VOTE_BY_FOLD).write_text(vote(plain, []))
    without = build.training_cv_type_vote(tmp_path)
    assert label not in without  # nothing until measured

    names = [f"type_classifier_cv{k}{suffix}.keras" for k in range(5)]
    weighted = {0.0: plain[0.0], share: ([0.95, 0.95, 0.93, 0.96, 0.92], 0.90)}
    (tmp_path / f"docs/results/cv/type_vote_by_fold{suffix}.json").write_text(vote(weighted, names))
    (tmp_path / f"models/cv/type_classifier/type_classifier_cv0{suffix}.json").write_text(
        json.dumps({"training": training})
    )
    text = build.training_cv_type_vote(tmp_path)
    words = " ".join(text.split())
    assert text.startswith(without)
    assert f"The same with the 5 fold classifiers `type_classifier_cvK{suffix}` in place of the" in words
    assert f"trained with {recipe}." in words
    assert ("typed with the outline its fold U-Net draws" in words) == (suffix == "_r")
    assert f"each cell plain → {label}" in words
    assert f"make cv-type-vote DATA=... CLASSIFIERS={suffix}" in words
    # gains by fold: +0.02, 0, +0.02, -0.01, +0.03
    assert f"| **{share:g}** | **0.930 → 0.942** | **+0.012 ± 0.016** | **0.800 → 0.900** |" in text
    assert "| 0 (the vote alone) | 0.900 → 0.900 | +0.000 ± 0.000 | 0.700 → 0.700 |" in text
    assert f"At the served share {share:g} the {label} set changes accuracy by +0.012 ± 0.016" in words
    assert "meningioma 0.800 → 0.900: no gain beyond the spread over folds" in words


@pytest.mark.parametrize(
    ("empty", "says"),
    [
        ({"n": 8, "offered": 7, "hit": 2}, "offered on 7 and held the tumour (Dice ≥ 0.1) on 2 of them"),
        ({"n": 3, "offered": 0, "hit": 0}, "so it would never have been offered"),
        ({"n": 0, "offered": 0, "hit": 0}, "the likeliest region was never offered"),
    ],
)
def test_the_offer_when_a_map_outlines_nothing_is_told_as_measured(empty, says):
    words = " ".join(" ".join(build.likeliest_offer({"empty_maps": empty})).split())
    assert says in words
    assert "held the tumour" not in words or empty["offered"]
    assert build.likeliest_offer({}) == []


def test_the_classifiers_alone_are_set_against_the_plain_set_fold_by_fold(tmp_path):
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    (tmp_path / "models/cv/type_classifier").mkdir(parents=True)
    assert "Not measured yet" in build.training_cv_type_alone(tmp_path)
    metas = {"": {}, "_r": {"tumour_region": {"dropped": 0.1}}}
    for suffix, extra in metas.items():
        (tmp_path / f"models/cv/type_classifier/type_classifier_cv0{suffix}.json").write_text(
            json.dumps({"training": {"type_weights": {}, **extra}})
        )

    def row(suffix, outline, accuracy, meningioma):
        by_fold = [{"accuracy": a, "accuracy_by_type": {}} for a in accuracy]
        means = {"meningioma_mean": meningioma, "meningioma_sd": 0.1, "glioma_mean": 0.95}
        return {
            "set": suffix,
            "outline": outline,
            "accuracy_mean": sum(accuracy) / len(accuracy),
            "accuracy_sd": 0.02,
            **means,
            "pituitary_mean": 0.97,
            "by_fold": by_fold,
        }

    plain = [0.90, 0.92, 0.88, 0.94, 0.86]
    gains = [0.02, 0, 0.02, -0.01, 0.03]
    results = [
        row("", "none", plain, 0.80),
        row("_r", "segmenter", [a + d for a, d in zip(plain, gains, strict=True)], 0.85),
        row("_r", "expert", [a + 0.05 for a in plain], 0.95),
    ]
    (tmp_path / build.TYPE_CLASSIFIERS_BY_FOLD).write_text(json.dumps({"results": results}))
    text = build.training_cv_type_alone(tmp_path)
    words = " ".join(text.split())
    assert "every slice drawn alike | not read | 0.900 ± 0.020 | — | 0.800 ± 0.100 |" in text
    assert "looking at the tumour's outline too (`--tumour-region`) | the fold U-Net's, as served |" in text
    assert "| the expert's | 0.950 ± 0.020 | +0.050 ± 0.000 | 0.950 ± 0.100 |" in text
    assert "changes accuracy by +0.012 ± 0.016 over the plain set and meningioma 0.800 → 0.850" in words
    assert "no gain beyond the spread over folds" in words  # 0.012 - 0.016 < 0


def test_the_targets_say_which_ideas_were_measured_and_on_how_many_folds():
    def fold(*overridden):
        return {"training": {"like": {"overridden": list(overridden)}}}

    shipped = [fold() for _ in range(5)]
    text = build.segmentation_ideas([*shipped, fold("hard_mining")], 5)
    assert text.startswith("measured so far: hard-example mining (1 of 5 folds), none yet on all 5 folds")
    assert "still to try: a shared encoder with a type head, sampling weighted toward the missed kind" in text
    assert "hard-example mining" not in text.split("still to try")[1]
    every = build.segmentation_ideas([*shipped, *(fold("hard_mining") for _ in range(5))], 5)
    assert "(5 of 5 folds), the paired figures, and the means over folds, are under" in every
    assert build.segmentation_ideas(shipped, 5).startswith("still to try: a shared encoder with a type head")


def test_a_fold_bundle_started_from_self_supervised_pretraining_is_a_recipe_and_an_idea_of_its_own():
    def bundle(start):
        return {
            "architecture": "unet",
            "training": {"like": {"path": "models/unet.json", "overridden": []}},
            "initialised_from": start,
        }

    pretrained = {"source": {"name": "unet_ssl_cv2_pre", "self_supervised": {"fold": 2}}}
    continued = {"source": {"name": "unet_ssl_cv2", "initialised_from": pretrained}}  # a second warm start
    own_checkpoint = {"source": {"name": "unet_cv0", "initialised_from": None}}  # as unet_cv0 continued
    assert build.cv_recipe(bundle(None)) == build.cv_recipe(bundle(own_checkpoint)) == build.SHIPPED_RECIPE
    assert build.cv_recipe(bundle(pretrained)) == build.cv_recipe(bundle(continued))
    assert build.cv_recipe(bundle(pretrained)) == (
        "like `models/unet.json`, from self-supervised pretraining (`ml.pretrain`)"
    )
    text = build.segmentation_ideas([bundle(None), bundle(pretrained)], 5)
    assert text.startswith("measured so far: self-supervised pretraining (1 of 5 folds)")
    assert "self-supervised" not in text.split("still to try")[1]


@pytest.mark.parametrize(
    ("gains", "verdict"), [([0.02, 0, 0.02, -0.01, 0.03], "none beyond"), ([0.03] * 5, "see")]
)
def test_the_targets_weigh_each_typing_idea_by_its_paired_gain(tmp_path, gains, verdict):
    (tmp_path / "docs/results/cv").mkdir(parents=True)
    assert build.typing_ideas(tmp_path) == ""

    def row(suffix, outline, accuracy):
        return {"set": suffix, "outline": outline, "by_fold": [{"accuracy": a} for a in accuracy]}

    plain = [0.90, 0.92, 0.88, 0.94, 0.86]
    region = [a + g for a, g in zip(plain, gains, strict=True)]
    results = [row("", "none", plain), row("_r", "segmenter", region)]
    (tmp_path / build.TYPE_CLASSIFIERS_BY_FOLD).write_text(json.dumps({"results": results}))
    text = build.typing_ideas(tmp_path)
    mean = sum(gains) / 5
    assert f"a classifier that reads the fold U-Net's outline, alone, +{mean:.3f} ± " in text
    assert f": {verdict}" in text
