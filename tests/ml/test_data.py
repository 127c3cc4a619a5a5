"""Patient-group splits and the training pipeline."""

import json
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from ml.data import (
    Augmentation,
    Record,
    _augment,
    augmentation_preset,
    development_fold,
    kfold_by_patient,
    make_dataset,
    read_records,
    split_by_patient,
    split_ids_as_trained,
    type_draw_weights,
)
from ml.train import TrainConfig
from tests.conftest import REPO_ROOT


def _records():
    recs, n = [], 0
    for g in range(60):
        ttype = ("meningioma", "glioma", "pituitary")[g % 3]
        for _ in range(1 + g % 5):
            n += 1
            recs.append(Record(id=str(n), tumour_type=ttype, patient_group=f"P{g}"))
    return recs


def test_no_patient_group_is_on_two_sides():
    recs = _records()
    split = split_by_patient(recs, seed=1)
    group = {r.id: r.patient_group for r in recs}
    sides = {name: {group[i] for i in ids} for name, ids in split.items()}
    assert (
        not sides["train"] & sides["val"]
        and not sides["train"] & sides["test"]
        and not sides["val"] & sides["test"]
    )
    assert sorted([i for ids in split.values() for i in ids], key=int) == [r.id for r in recs]


def test_split_is_seeded_and_stratified_by_type():
    recs = _records()
    assert split_by_patient(recs, seed=3) == split_by_patient(recs, seed=3)
    assert split_by_patient(recs, seed=3) != split_by_patient(recs, seed=4)
    ttype = {r.id: r.tumour_type for r in recs}
    test = Counter(ttype[i] for i in split_by_patient(recs, seed=3)["test"])
    assert set(test) == {"meningioma", "glioma", "pituitary"}
    total = len(recs)
    n_test = sum(test.values())
    assert 0.08 * total < n_test < 0.22 * total


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to less than 1"):
        split_by_patient(_records(), val_fraction=0.6, test_fraction=0.5)


def test_a_bundles_split_is_rebuilt_from_its_metadata():
    recs = _records()
    meta = {"by": "patient_group", "seed": 7, "val_fraction": 0.2, "test_fraction": 0.1}
    made = split_by_patient(recs, seed=7, val_fraction=0.2, test_fraction=0.1)
    for name in ("train", "val", "test"):
        assert split_ids_as_trained(recs, meta, name) == made[name]
    assert split_ids_as_trained(recs, meta, "val") != split_by_patient(recs, seed=7)["val"]  # fractions count
    # Metadata written before the fractions were recorded: split_by_patient's defaults.
    assert split_ids_as_trained(recs, {}, "test") == split_by_patient(recs, seed=42)["test"]


def test_a_cross_validation_bundles_split_is_its_fold():
    """A fold bundle's validation slices are its fold's: with the ordinary split instead, most of them
    would be slices it trained on."""
    recs = _records()
    meta = {"by": "patient_group", "seed": 7, "fold": 1, "folds": 4}
    made = development_fold(recs, split_by_patient(recs, seed=7), 1, k=4, seed=7)
    for name in ("train", "val", "test"):
        assert split_ids_as_trained(recs, meta, name) == made[name]
    assert split_ids_as_trained(recs, meta, "val") != split_by_patient(recs, seed=7)["val"]
    assert split_ids_as_trained(recs, meta, "test") == split_by_patient(recs, seed=7)["test"]
    assert not set(split_ids_as_trained(recs, meta, "val")) & set(split_ids_as_trained(recs, meta, "train"))


@pytest.mark.realdata
def test_the_fold_bundles_splits_are_rebuilt_as_recorded(figshare_dir):
    records = read_records(figshare_dir)
    bundles = sorted((REPO_ROOT / "models" / "cv").glob("*.json"))
    assert bundles
    for path in bundles:
        split = json.loads(path.read_text())["training"]["split"]
        for name in ("train", "val", "test"):
            assert len(split_ids_as_trained(records, split, name)) == split["sizes"][name], (path.name, name)


def test_kfold_partitions_by_patient_group():
    recs = _records()
    folds = kfold_by_patient(recs, k=5, seed=0)
    group = {r.id: r.patient_group for r in recs}
    seen = set()
    for fold in folds:
        groups = {group[i] for i in fold}
        assert not groups & seen
        seen |= groups
    assert sum(len(f) for f in folds) == len(recs)
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 6


def test_augmentation_moves_image_and_mask_together():

    tf.random.set_seed(0)
    image = np.zeros((32, 32, 1), np.float32)
    image[4:12, 4:12] = 1.0
    mask = image.copy()
    aug = Augmentation(max_brightness=0.0, max_contrast=0.0)
    for _ in range(5):
        img2, mask2 = (t.numpy() for t in _augment(tf.constant(image), tf.constant(mask), aug))
        assert set(np.unique(mask2)) <= {0.0, 1.0}
        assert img2.min() >= 0.0 and img2.max() <= 1.0
        bright = img2[..., 0] > 0.5
        overlap = (bright & (mask2[..., 0] > 0)).sum() / max(bright.sum(), 1)
        assert overlap > 0.85


def test_augmentation_presets_and_unknown_names():
    assert augmentation_preset("none") is None
    assert augmentation_preset("standard") == Augmentation()
    strong = augmentation_preset("strong")
    assert (
        strong.max_rotation_deg > Augmentation().max_rotation_deg
        and strong.max_scale > Augmentation().max_scale
    )
    with pytest.raises(ValueError, match="none, standard, strong"):
        augmentation_preset("extreme")
    with pytest.raises(ValueError, match="augmentation"):
        TrainConfig(architecture="unet", data_dir=".", augmentation="extreme")
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(architecture="unet", data_dir=".", dropout=1.5)


def test_dataset_batches_have_the_model_shape():
    x = np.random.rand(5, 32, 32, 1).astype("float32")
    y = (x > 0.5).astype("float32")
    batches = list(make_dataset(x, y, batch_size=2, repeat_outputs=3))
    assert len(batches) == 3
    assert batches[0][0].shape == (2, 32, 32, 1) and len(batches[0][1]) == 3


def _drawn_types(dataset) -> list[str]:
    """The slices a pass drew, by the type stamped in their first pixel (1 glioma, 0 meningioma)."""
    return ["glioma" if x[0, 0, 0] == 1 else "meningioma" for batch, _ in dataset for x in batch.numpy()]


def test_type_weights_draw_a_type_as_often_as_its_weight_says_anew_each_pass():
    records = [Record(str(i), "glioma" if i < 100 else "meningioma", f"g{i}") for i in range(200)]
    x = np.zeros((200, 4, 4, 1), np.float32)
    x[:100, 0, 0, 0] = 1.0
    y = np.zeros_like(x)
    weights = type_draw_weights(records, {"glioma": 3.0})
    assert weights[:2] == [3.0, 3.0] and weights[-1] == 1.0
    dataset = make_dataset(x, y, batch_size=50, shuffle=True, draw_weights=weights, seed=7)
    passes = [_drawn_types(dataset) for _ in range(4)]
    assert all(len(p) == 200 for p in passes)  # an epoch is as long as the data, whatever the weights
    share = np.mean([t == "glioma" for p in passes for t in p])
    assert 0.70 < share < 0.80  # 3 : 1, so 0.75 expected (800 draws: sd 0.015)
    assert passes[0] != passes[1]  # drawn anew each pass
    again = make_dataset(x, y, batch_size=50, shuffle=True, draw_weights=weights, seed=7)
    assert _drawn_types(again) == passes[0]  # and reproducible from the seed


def test_no_type_weights_keep_every_slice_once_per_pass():
    records = [Record(str(i), "glioma", f"g{i}") for i in range(3)]
    assert type_draw_weights(records, {}) is None
    with pytest.raises(ValueError, match="finite weight > 0 per slice"):
        make_dataset(np.zeros((3, 4, 4, 1), np.float32), np.zeros((3, 4, 4, 1)), draw_weights=[1.0, 0.0, 1.0])


@pytest.mark.realdata
def test_the_shared_split_keeps_patients_apart(figshare_dir):
    recs = read_records(figshare_dir)
    split = split_by_patient(recs, seed=42)
    group = {r.id: r.patient_group for r in recs}
    assert not {group[i] for i in split["train"]} & {group[i] for i in split["test"]}
    assert len(recs) == sum(len(v) for v in split.values())
