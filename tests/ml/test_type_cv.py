"""The fold type classifiers scored alone by cross-validation (``ml.type_cv``)."""

import numpy as np
import pytest

from ml import type_cv
from ml.data import Record, Slices


def _touch(models_dir, *names):
    (models_dir / "type_classifier").mkdir(parents=True, exist_ok=True)
    for name in names:
        (models_dir / "type_classifier" / f"{name}.keras").write_bytes(b"")


def test_the_sets_are_the_suffixes_with_every_fold(tmp_path):
    _touch(tmp_path, *(f"type_classifier_cv{k}" for k in range(3)))
    _touch(tmp_path, "type_classifier_cv0_r", "type_classifier_cv1_r")
    sets = type_cv.classifier_sets(tmp_path, None, 3)
    assert list(sets) == [""]  # _r lacks fold 2: not a set yet
    assert [p.name for p in sets[""]] == [f"type_classifier_cv{k}.keras" for k in range(3)]
    with pytest.raises(ValueError, match=r"the set '_r' lacks type_classifier_cv2_r\.keras"):
        type_cv.classifier_sets(tmp_path, ["", "_r"], 3)
    with pytest.raises(ValueError, match="no set of 3 fold classifiers"):
        type_cv.classifier_sets(tmp_path / "elsewhere", None, 3)


class _Classifier:
    """A stand-in: says meningioma where it is given an outline, glioma where not; records what it got."""

    def __init__(self, takes_outline):
        self.takes_outline, self.seen = takes_outline, []

    def probabilities(self, images, masks=None):
        self.seen.append(masks)
        given = [m is not None and bool(np.any(m)) for m in (masks or [None] * len(images))]
        return np.array([[1.0, 0.0, 0.0] if g else [0.0, 1.0, 0.0] for g in given])


class _Segmenter:
    def binarize(self, prob):
        return prob > 0.5


def _fold():
    records = [Record("1", "meningioma", "a"), Record("2", "glioma", "b")]
    images = [np.zeros((8, 8), np.uint8)] * 2
    masks = [np.ones((8, 8), bool), np.ones((8, 8), bool)]
    maps = [np.full((8, 8), 0.9, np.float32), np.zeros((8, 8), np.float32)]  # the second outlined nothing
    return Slices(records, images, masks), maps


def test_a_classifier_that_reads_the_outline_gets_the_segmenters_the_experts_and_none():
    slices, maps = _fold()
    classifier = _Classifier(takes_outline=True)
    scores = type_cv.score_fold(classifier, _Segmenter(), slices, maps)
    assert list(scores) == ["segmenter", "expert", "none"]
    segmenter, expert, none = classifier.seen
    assert segmenter[0].all() and not segmenter[1].any()  # the U-Net's served outlines, not the expert's
    assert expert is slices.masks and none is None
    assert scores["segmenter"]["accuracy"] == 1.0  # meningioma outlined, the glioma not
    assert scores["expert"]["accuracy_by_type"] == {"meningioma": 1.0, "glioma": 0.0}
    assert scores["none"]["accuracy_by_type"] == {"meningioma": 0.0, "glioma": 1.0}


def test_a_classifier_that_ignores_the_outline_is_scored_once():
    slices, maps = _fold()
    classifier = _Classifier(takes_outline=False)
    assert list(type_cv.score_fold(classifier, _Segmenter(), slices, maps)) == ["none"]
    assert classifier.seen == [None]


def test_the_folds_are_summarised_by_mean_and_sd():
    by_fold = [
        {"accuracy": 0.9, "accuracy_by_type": {"meningioma": 0.8, "glioma": 1.0}},
        {"accuracy": 0.8, "accuracy_by_type": {"meningioma": 0.6, "glioma": 1.0}},
    ]
    s = type_cv.summarise(by_fold)
    assert s["accuracy_mean"] == pytest.approx(0.85) and s["accuracy_sd"] == pytest.approx(0.0707, abs=1e-4)
    assert s["meningioma_mean"] == pytest.approx(0.7) and s["glioma_sd"] == 0.0
    assert "pituitary_mean" not in s


def test_the_command_says_what_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        type_cv.main(["--data", str(tmp_path), "--models-dir", str(tmp_path), "--json", "x.json"])
    assert "no set of 5 fold classifiers" in capsys.readouterr().err
    _touch(tmp_path, *(f"type_classifier_cv{k}" for k in range(5)))
    with pytest.raises(SystemExit):
        type_cv.main(["--data", str(tmp_path), "--models-dir", str(tmp_path), "--json", "x.json"])
    assert "no fold U-Net unet_cv0.keras" in capsys.readouterr().err
