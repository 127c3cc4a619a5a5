"""Cross-validation of the combined vector's weights (recommender.tuning, manage.py tune_retrieval)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from ml.data import kfold_by_patient, load_slices, read_records, split_by_patient
from ml.inference import load_segmenter
from ml.type_classification import load_type_classifier, train_type_classifier
from recommender import features as feature_extractor
from recommender.services import outline_from_probability
from recommender.tuning import (
    Described,
    cross_validate,
    describe_by_fold,
    fold_bundles,
    grid,
    out_of_fold_classifier,
)
from segmentation.services import model_versions_sync
from segmentation.testing import retrain_bundle, write_shared_layout
from tests.ml.builders import tiny_classifier

TYPES = ("glioma", "meningioma", "pituitary")


def _described(n_per_type: int, *, separable: str, seed: int = 0) -> Described:
    """Slices whose types are told apart only by the hand-made features or only by the embedding."""
    rng = np.random.default_rng(seed)
    n = 3 * n_per_type
    types = [t for t in TYPES for _ in range(n_per_type)]
    label = np.array([TYPES.index(t) for t in types], dtype=float)
    feats = rng.normal(size=(n, feature_extractor.N_FEATURES)).astype(np.float32)
    emb = rng.normal(size=(n, 3)).astype(np.float32)
    target = feats if separable == "features" else emb
    centroids = 2.0 * rng.normal(size=(3, target.shape[1]))
    target += centroids[label.astype(int)].astype(np.float32)
    ok = np.ones(n, bool)
    return Described(
        [str(i) for i in range(n)],
        types,
        [f"P{i}" for i in range(n)],
        feats,
        feats.copy(),
        ok,
        ok.copy(),
        {"m": emb},
        {"m": emb.copy()},
    )


def _folds(d: Described, k: int = 3) -> list[list[str]]:
    return [d.ids[i::k] for i in range(k)]


def test_separable_features_give_a_perfect_vote_and_ranking():
    d = _described(12, separable="features")
    result = cross_validate(
        d, _folds(d), {"discriminant": 1.0, "features": 1.0, "embedding": 0.0}, embedding=None
    )
    assert result["type_accuracy"] == 1.0 and result["map"] == 1.0 and result["n_queries"] == 36
    assert set(result["type_accuracy_by_type"]) == set(TYPES) and len(result["type_accuracy_by_fold"]) == 3


def test_the_embedding_weight_is_what_lets_an_embedding_only_signal_through():
    d = _described(12, separable="embedding")
    without = cross_validate(
        d, _folds(d), {"discriminant": 0.0, "features": 1.0, "embedding": 0.0}, embedding="m"
    )
    heavy = cross_validate(
        d, _folds(d), {"discriminant": 0.0, "features": 1.0, "embedding": 6.0}, embedding="m"
    )
    assert without["type_accuracy"] < 0.5  # about chance: the features carry no type
    assert heavy["type_accuracy"] > 0.85 and heavy["map"] > without["map"]


def test_reusing_each_folds_fit_across_the_grid_gives_the_same_figures():
    d = _described(12, separable="embedding")
    fitted: dict = {}
    for we in (0.0, 1.0, 6.0):
        w = {"discriminant": 0.5, "features": 1.0, "embedding": we}
        shared = cross_validate(d, _folds(d), w, embedding="m", fitted=fitted)
        assert shared == cross_validate(d, _folds(d), w, embedding="m")
    assert len(fitted) == len(_folds(d))  # one fit per fold, not one per setting


def test_a_query_with_no_outline_counts_as_wrong():
    d = _described(12, separable="features")
    d.query_ok[0] = False
    result = cross_validate(
        d, _folds(d), {"discriminant": 1.0, "features": 1.0, "embedding": 0.0}, embedding=None
    )
    assert result["type_accuracy"] == pytest.approx(35 / 36, abs=1e-4)


def test_the_balanced_vote_is_scored_and_recorded_as_such():
    # The features carry no type here, so the plain vote follows the base's make-up and seldom says
    # meningioma, the rare type; corrected by the shares it says so more often.
    d = _described(12, separable="embedding")
    keep = [i for i, t in enumerate(d.types) if t != "meningioma" or i % 3 == 0]  # few meningiomas
    d = Described(
        [d.ids[i] for i in keep],
        [d.types[i] for i in keep],
        [d.groups[i] for i in keep],
        d.base_features[keep],
        d.query_features[keep],
        d.base_ok[keep],
        d.query_ok[keep],
        {"m": d.base_embeddings["m"][keep]},
        {"m": d.query_embeddings["m"][keep]},
    )
    w = {"discriminant": 0.0, "features": 1.0, "embedding": 0.0}
    plain = cross_validate(d, _folds(d), w, embedding=None)
    balanced = cross_validate(d, _folds(d), w, embedding=None, balanced=True)
    assert (plain["balanced_vote"], balanced["balanced_vote"]) == (False, True)
    assert balanced["n_queries"] == plain["n_queries"] == len(keep)
    assert balanced["type_accuracy_by_type"]["meningioma"] > plain["type_accuracy_by_type"]["meningioma"]


def test_an_out_of_fold_classifier_is_blended_with_the_vote_at_each_weight():
    d = _described(12, separable="embedding")  # the features (w_e 0) carry no type: the vote is near chance
    d.query_ok[0] = False
    sure = {i: {t: float(t == typ) for t in TYPES} for i, typ in zip(d.ids, d.types, strict=True)}
    w = {"discriminant": 0.0, "features": 1.0, "embedding": 0.0}
    result = cross_validate(
        d, _folds(d), w, embedding=None, classifier=sure, classifier_weights=[0.0, 0.6, 1.0]
    )
    blends = result["by_classifier_weight"]
    assert set(blends) == {"0.0", "0.6", "1.0"}
    assert blends["0.0"]["type_accuracy"] == result["type_accuracy"] < 0.6  # w 0: the vote alone
    # A sure classifier outweighs any vote from w > 0.5; the query with no outline stays wrong.
    assert (
        blends["0.6"]["type_accuracy"] == blends["1.0"]["type_accuracy"] == pytest.approx(35 / 36, abs=1e-4)
    )
    assert len(blends["1.0"]["type_accuracy_by_fold"]) == 3 and set(
        blends["1.0"]["type_accuracy_by_type"]
    ) == set(TYPES)
    assert "by_classifier_weight" not in cross_validate(d, _folds(d), w, embedding=None)


def test_grid_is_every_combination():
    settings = grid([0.5, 1.0], [1.0], [0.0, 0.6, 1.2])
    assert len(settings) == 6 and {"discriminant": 0.5, "features": 1.0, "embedding": 1.2} in settings


@pytest.mark.django_db
@pytest.mark.slow
def test_tune_retrieval_reads_only_training_patients_and_caches(models_dir, tmp_path, capsys):
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    model_versions_sync()
    out, cache = tmp_path / "tune.json", tmp_path / "cache.npz"
    args = [
        "tune_retrieval",
        "--data",
        str(data),
        "--json",
        str(out),
        "--folds",
        "3",
        "--cache",
        str(cache),
        "--w-embedding",
        "0",
        "1",
        "--embedding-models",
        "tiny_unet",
    ]
    call_command(*args)
    result = json.loads(out.read_text())
    assert len(result["results"]) == 2 and result["folds"] == 3
    accuracies = [r["type_accuracy"] for r in result["results"]]
    assert accuracies == sorted(accuracies, reverse=True) and all(0.0 <= a <= 1.0 for a in accuracies)
    assert all(r["embedding_model"].startswith("tiny_unet@") for r in result["results"])

    test_ids = set(split_by_patient(read_records(data), seed=42)["test"])
    with np.load(cache) as z:
        described_ids = set(json.loads(str(z["meta"]))["ids"])
    assert test_ids and not (described_ids & test_ids)
    assert result["n_slices"] == len(described_ids) == 24 - len(test_ids)

    capsys.readouterr()
    call_command(*args)
    assert "using the described slices cached" in capsys.readouterr().out


@pytest.mark.django_db
def test_tune_retrieval_refuses_bad_input(models_dir, tmp_path):
    with pytest.raises(CommandError, match=r"no cases\.csv"):
        call_command("tune_retrieval", "--data", str(tmp_path), "--json", str(tmp_path / "o.json"))
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    with pytest.raises(CommandError, match="sync_models"):
        call_command("tune_retrieval", "--data", str(data), "--json", str(tmp_path / "o.json"))
    model_versions_sync()
    with pytest.raises(CommandError, match="not an active single model: nope"):
        call_command(
            "tune_retrieval",
            "--data",
            str(data),
            "--json",
            str(tmp_path / "o.json"),
            "--embedding-models",
            "nope",
        )


def _fold_classifiers(data, tmp_path, folds):
    return [
        train_type_classifier(
            tiny_classifier(data, tmp_path, f"tc_cv{fold}", fold=fold, folds=3), log=lambda _: None, verbose=0
        )["path"]
        for fold in folds
    ]


@pytest.mark.django_db
@pytest.mark.slow
def test_tune_retrieval_scores_the_blend_with_classifiers_that_held_each_fold_out(models_dir, tmp_path):
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    model_versions_sync()
    bundles = _fold_classifiers(data, tmp_path, [0, 1, 2])
    out = tmp_path / "tune.json"
    args = ["tune_retrieval", "--data", str(data), "--json", str(out), "--folds", "3"]
    args += ["--cache", str(tmp_path / "cache.npz"), "--w-embedding", "0", "--classifier-weights", "0", "1"]
    call_command(*args, "--classifier-folds", *bundles)
    result = json.loads(out.read_text())
    assert result["classifier_folds"] == ["tc_cv0.keras", "tc_cv1.keras", "tc_cv2.keras"]
    (scored,) = result["results"]
    assert set(scored["by_classifier_weight"]) == {"0.0", "1.0"}
    assert scored["by_classifier_weight"]["0.0"]["type_accuracy"] == scored["type_accuracy"]
    with pytest.raises(CommandError, match="no bundle held out fold 2"):
        call_command(*args, "--classifier-folds", *bundles[:2])
    with pytest.raises(CommandError, match=r"must lie in \[0, 1\]"):
        call_command(*args, "--classifier-folds", *bundles, "--classifier-weights", "1.5")
    reader = train_type_classifier(
        tiny_classifier(data, tmp_path, "tc_cv2_r", fold=2, folds=3, tumour_region=True),
        log=lambda _: None,
        verbose=0,
    )["path"]
    with pytest.raises(CommandError, match=r"tc_cv2_r\.keras read the tumour's outline.*--fold-models"):
        call_command(*args, "--classifier-folds", *bundles[:2], reader)


def _fold_segmenters(models: Path, out: Path, folds: int) -> list[Path]:
    """The tiny U-Net retrained once per fold (new weights each), its JSON saying it held that fold out."""
    paths = []
    for fold in range(folds):
        folder = out / f"cv{fold}"
        folder.mkdir(parents=True)
        for suffix in (".keras", ".json"):
            shutil.copy(models / f"tiny_unet{suffix}", folder / f"tiny_unet{suffix}")
        retrain_bundle(folder, "tiny_unet", seed=40 + fold)
        meta = json.loads((folder / "tiny_unet.json").read_text())
        split = {"by": "patient_group", "seed": 42, "fold": fold, "folds": folds}
        meta["training"] = {**meta.get("training", {}), "split": split}
        (folder / "tiny_unet.json").write_text(json.dumps(meta))
        paths.append(folder / "tiny_unet.keras")
    return paths


def test_each_fold_is_described_by_the_model_that_held_it_out(models_dir, tmp_path):
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    records = _development(data)
    folds = kfold_by_patient(records, k=3, seed=42)
    bundles = _fold_segmenters(models_dir, tmp_path, 3)[::-1]  # in any order
    paths, names = fold_bundles(data, folds, bundles)
    assert paths == bundles[::-1] and len(set(names)) == 3
    described = describe_by_fold(data, records, folds, bundles, runtime="tensorflow")

    row = {r.id: i for i, r in enumerate(records)}
    for fold, (path, name) in enumerate(zip(paths, names, strict=True)):
        own = np.zeros(len(records), bool)
        own[[row[i] for i in folds[fold]]] = True
        query, base = described.query_embeddings[name], described.base_embeddings[name]
        assert np.abs(query[own]).sum(axis=1).min() > 0 and not query[~own].any()
        assert not base[own].any() and np.abs(base[~own]).sum(axis=1).min() > 0
        # A query of this fold: the mask and embedding of the model that held the fold out.
        first = next(r for r in records if r.id in folds[fold])
        model = load_segmenter(path, runtime="tensorflow")
        image = np.asarray(Image.open(data / "images" / f"{first.id}.png").convert("L"))
        prob = model.predict_proba([image])[0]
        expected = model.embed(image, outline_from_probability(prob, model.binarize(prob)))
        np.testing.assert_allclose(query[row[first.id]], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.django_db
def test_tune_retrieval_with_fold_models_names_them_and_refuses_a_missing_fold(models_dir, tmp_path):
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    bundles = _fold_segmenters(models_dir, tmp_path, 3)
    out = tmp_path / "tune.json"
    args = ["tune_retrieval", "--data", str(data), "--json", str(out), "--folds", "3"]
    args += ["--cache", str(tmp_path / "cache.npz"), "--w-embedding", "0", "1"]
    call_command(*args, "--fold-models", *map(str, bundles))  # no sync_models needed: no served model
    result = json.loads(out.read_text())
    names = fold_bundles(data, kfold_by_patient(_development(data), k=3, seed=42), bundles)[1]
    assert result["described_by"] == f"each fold's own model: {', '.join(names)}"
    assert {r["embedding_model"] for r in result["results"]} == {", ".join(names)}
    assert len(result["results"]) == 2
    with pytest.raises(CommandError, match="no bundle held out fold 2"):
        call_command(*args, "--fold-models", *map(str, bundles[:2]))
    # A quick look: the folds are still those the bundles were trained on, cut to the first slices.
    call_command(
        *args, "--fold-models", *map(str, bundles), "--limit", "7", "--cache", str(tmp_path / "c7.npz")
    )
    assert json.loads(out.read_text())["n_slices"] == 7
    with pytest.raises(CommandError, match="takes no --embedding-models"):
        call_command(*args, "--fold-models", *map(str, bundles), "--embedding-models", "tiny_unet")


@pytest.mark.slow
def test_a_classifier_reading_the_outline_gets_the_fold_segmenters_outline_of_the_query(models_dir, tmp_path):
    data = tmp_path / "data"
    write_shared_layout(data, n_per_type=8)
    folds = kfold_by_patient(_development(data), k=3, seed=42)
    segmenters = _fold_segmenters(models_dir, tmp_path, 3)
    reader = train_type_classifier(
        tiny_classifier(data, tmp_path, "tc_cv2_r", fold=2, folds=3, tumour_region=True),
        log=lambda _: None,
        verbose=0,
    )["path"]
    bundles = [*_fold_classifiers(data, tmp_path, [0, 1]), reader]
    maps = tmp_path / "maps"
    typed = out_of_fold_classifier(data, folds, bundles, segmenters=segmenters, maps_cache=maps)
    assert set(typed) == {i for fold in folds for i in fold}

    # Fold 2's queries: typed with the outline that fold 2's segmenter gives them in describe_by_fold.
    model, classifier = load_segmenter(segmenters[2]), load_type_classifier(reader)
    slices = load_slices(data, folds[2])
    outlines = [outline_from_probability(p, model.binarize(p)) for p in model.predict_proba(slices.images)]
    assert any(o.any() for o in outlines)
    with_outline = classifier.probabilities(slices.images, outlines)
    got = np.array([[typed[r.id][t] for t in classifier.classes] for r in slices.records])
    np.testing.assert_allclose(got, with_outline, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, classifier.probabilities(slices.images), atol=1e-5)
    assert len(list(maps.glob("*.npz"))) == 1  # only the reader's fold was segmented

    with pytest.raises(ValueError, match=r"tc_cv2_r\.keras read the tumour's outline.*--fold-models"):
        out_of_fold_classifier(data, folds, bundles)


def _development(data: Path) -> list:
    records = read_records(data)
    split = split_by_patient(records, seed=42)
    return [r for r in records if r.id in set(split["train"]) | set(split["val"])]
