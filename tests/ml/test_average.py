"""Weight averaging (``ml.average``): the mean of the weights, exact batch-norm statistics, and a real run."""

import json

import keras
import numpy as np
import pytest

from ml.average import average_run, average_weights, main, recompute_batchnorm
from ml.inference import load_segmenter
from ml.models import ModelSpec
from ml.train import TrainConfig, train


def _small(dropout=0.0, depth=2):

    keras.mixed_precision.set_global_policy("float32")
    return ModelSpec(architecture="unet", input_size=32, base_filters=4, depth=depth, dropout=dropout).build()


def _saved(model, path, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(path)
    return model.get_weights()


def test_average_weights_is_the_element_wise_mean(tmp_path):
    a = _saved(_small(), tmp_path / "a.keras", 1)
    b = _saved(_small(), tmp_path / "b.keras", 2)
    c = _saved(_small(), tmp_path / "c.keras", 3)
    mean = average_weights([tmp_path / "a.keras", tmp_path / "b.keras", tmp_path / "c.keras"])
    assert len(mean) == len(a)
    for m, x, y, z in zip(mean, a, b, c, strict=True):
        np.testing.assert_allclose(m, (x + y + z) / 3, rtol=1e-5, atol=1e-6)


def test_average_weights_refuses_one_checkpoint_a_missing_one_or_another_graph(tmp_path):
    _saved(_small(), tmp_path / "a.keras", 1)
    _saved(_small(depth=3), tmp_path / "deeper.keras", 2)
    with pytest.raises(ValueError, match="at least two"):
        average_weights([tmp_path / "a.keras"])
    with pytest.raises(FileNotFoundError, match=r"missing\.keras"):
        average_weights([tmp_path / "a.keras", tmp_path / "missing.keras"])
    with pytest.raises(ValueError, match="another graph"):
        average_weights([tmp_path / "a.keras", tmp_path / "deeper.keras"])


def test_recomputed_batchnorm_statistics_are_the_mean_of_the_batch_statistics():

    model = _small(dropout=0.5)
    rng = np.random.default_rng(0)
    images = rng.random((12, 32, 32, 1)).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    first = norms[0]
    before = keras.Model(model.input, first.input)  # what the first batch norm sees

    seen = []
    assert recompute_batchnorm(model, images, batch_size=4, progress=seen.append) == len(norms)
    assert seen == [4, 4, 4]
    feats = [np.asarray(before(images[i : i + 4])) for i in range(0, 12, 4)]
    np.testing.assert_allclose(
        np.asarray(first.moving_mean),
        np.mean([f.mean(axis=(0, 1, 2)) for f in feats], axis=0),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(first.moving_variance),
        np.mean([f.var(axis=(0, 1, 2)) for f in feats], axis=0),
        rtol=1e-3,
        atol=1e-5,
    )

    # Dropout was off: the layers after it get the same statistics on a second pass.
    last = [np.asarray(v).copy() for v in (norms[-1].moving_mean, norms[-1].moving_variance)]
    recompute_batchnorm(model, images, batch_size=4)
    np.testing.assert_allclose(np.asarray(norms[-1].moving_mean), last[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(norms[-1].moving_variance), last[1], rtol=1e-5, atol=1e-6)
    # ...and the layers are as they were for training afterwards.
    assert all(bn.momentum == 0.99 for bn in norms)
    assert [d.rate for d in model.layers if isinstance(d, keras.layers.Dropout)] == [0.5]


@pytest.mark.slow
@pytest.mark.realdata
def test_a_run_that_kept_its_epochs_averages_into_a_calibrated_bundle(figshare_dir, tmp_path):
    cfg = TrainConfig(
        architecture="unet",
        data_dir=str(figshare_dir),
        image_size=32,
        base_filters=4,
        depth=2,
        epochs=2,
        batch_size=4,
        limit=8,
        output_dir=str(tmp_path / "models"),
        run_dir=str(tmp_path / "run"),
        name="kept",
        precision="fp32",
        keep_epochs=True,
    )
    train(cfg, log=lambda *_: None, verbose=0)
    epochs = sorted((tmp_path / "run" / "epochs").glob("epoch_*.keras"))
    assert [p.name for p in epochs] == ["epoch_01.keras", "epoch_02.keras"]

    messages = []
    result = average_run(
        epochs,
        tmp_path / "models" / "kept.json",
        figshare_dir,
        "kept_avg",
        tmp_path / "avg",
        precision="fp32",
        batch_size=4,
        log=messages.append,
        show_progress=False,
        limit=8,
    )
    meta = json.loads((tmp_path / "avg" / "kept_avg.json").read_text())
    assert meta["name"] == "kept_avg" and meta["spec"]["depth"] == 2
    record = meta["weight_average"]
    assert [c["path"] for c in record["checkpoints"]] == [str(p) for p in epochs]
    assert all(len(c["sha256"]) == 64 for c in record["checkpoints"])
    assert record["batchnorm_slices"] == 8 and meta["metrics"]["val"]["n"] == 8
    assert 0.0 <= record["val_dice_at_0_5"] <= 1.0
    assert any("recomputed" in m and "batch-norm layers" in m for m in messages)
    seg = load_segmenter(result["path"])
    assert seg.predict_proba([np.zeros((64, 64), np.uint8)])[0].shape == (64, 64)

    with pytest.raises(SystemExit, match="at least two checkpoints"):
        main(
            [
                "--data",
                str(figshare_dir),
                "--checkpoints",
                str(epochs[0]),
                "--like",
                str(tmp_path / "models" / "kept.json"),
                "--name",
                "x",
                "--output-dir",
                str(tmp_path / "x"),
            ]
        )
