"""`python -m ml.calibrate` end to end: it rewrites each bundle's choices and the ensemble's file."""

import json

import pytest

from ml.calibrate import SCALE_CHOICES, main
from ml.inference import load_segmenter, save_bundle
from ml.models import ModelSpec
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_calibrate_writes_each_bundles_choice_and_the_ensemble_file(figshare_dir, tmp_path, capsys):
    split = json.loads((REPO_ROOT / "models" / "unet.json").read_text())["training"]["split"]
    for arch in ("unet", "attention_unet"):
        spec = ModelSpec(architecture=arch, input_size=32, base_filters=4, depth=3)
        save_bundle(
            spec.build(),
            tmp_path,
            f"tiny_{arch}",
            {"spec": spec.get_config(), "threshold": 0.5, "training": {"split": split}},
        )
    # An agreement flag chosen for the old ensemble's masks (ml.agreement) does not outlive them.
    (tmp_path / "ensemble.json").write_text(
        json.dumps({"members": ["tiny_unet"], "agreement": {"flag_below": 0.5}})
    )
    main(["--data", str(figshare_dir), "--models-dir", str(tmp_path)])
    assert "the agreement flag was chosen for the old masks and is dropped" in capsys.readouterr().out
    for arch in ("unet", "attention_unet"):
        meta = json.loads((tmp_path / f"tiny_{arch}.json").read_text())
        assert tuple(meta["tta_scales"]) in SCALE_CHOICES and isinstance(meta["tta"], bool)
        assert meta["metrics"]["val"]["n"] == 385  # scored on the whole validation split
        assert load_segmenter(tmp_path / f"tiny_{arch}.keras").tta_scales == tuple(meta["tta_scales"])
    ensemble = json.loads((tmp_path / "ensemble.json").read_text())
    assert sorted(ensemble["members"]) == ["tiny_attention_unet", "tiny_unet"]
    assert ensemble["tta"] is None and "tta_scales" not in ensemble  # members keep their own
    assert "agreement" not in ensemble
    assert ensemble["metrics"]["val"]["n"] == 385 and 0.10 <= ensemble["threshold"] <= 0.70
