"""The model lifecycle (#33, item 4): candidate -> evaluate -> promote (or refuse) -> rollback.

The bundles are segmentation.testing's tiny untrained ones; thresholds set in a candidate's JSON make its
masks predictably full (threshold 0, like the active ones) or empty (above 1), so "not worse" and "worse"
do not depend on what an untrained net happens to output. The type classifiers are tiny too, set to type
every slice one way, and scored on slices that are all glioma, for the same reason.
"""

import csv
import json
import shutil
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditEntry
from cases.models import Case
from cases.services import case_ground_truth_set
from clinic.health import OK, check_models
from ml.data import read_records, split_ids_as_trained
from recommender.services import type_classifier_served
from segmentation import services
from segmentation.models import ModelVersion, SegmentationRun
from segmentation.services import SegmentationError
from segmentation.services.lifecycle import (
    HeldOut,
    LifecycleError,
    candidate_evaluate,
    candidate_register,
    model_promote,
    model_rollback,
)
from segmentation.tasks import run_segmentation_task
from segmentation.testing import (
    TINY_TYPE_CLASSIFIER_SPEC,
    make_case,
    retrain_bundle,
    synthetic_case_kwargs,
    synthetic_slice,
    tiny_type_classifier_bundle,
    write_shared_layout,
)

pytestmark = pytest.mark.django_db

FOLD = HeldOut(split=None, fold=0, folds=2)


@pytest.fixture
def served(settings, tiny_bundles_dir, tmp_path, media_dir):
    """A models directory of its own (candidates/ is written into it), synced: the tiny bundles serve."""
    models = tmp_path / "models"
    models.mkdir()
    for f in tiny_bundles_dir.iterdir():
        shutil.copy(f, models / f.name)
    settings.TUMORSITE_MODELS_DIR = models
    settings.TUMORSITE_PRIMARY_MODEL = "ensemble"
    settings.TUMORSITE_EMBEDDING_MODEL = ""
    services.model_versions_sync()
    return models


def _candidate_bundle(tmp_path, *, threshold: float, seed: int = 7):
    """New weights for tiny_unet in a folder outside the models directory, with this threshold."""
    folder = tmp_path / f"trained-{seed}-{threshold}"
    folder.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(services.models_dir() / f"tiny_unet{suffix}", folder / f"tiny_unet{suffix}")
    retrain_bundle(folder, "tiny_unet", seed=seed)
    meta = json.loads((folder / "tiny_unet.json").read_text())
    (folder / "tiny_unet.json").write_text(json.dumps({**meta, "threshold": threshold}))
    return folder / "tiny_unet.keras"


@pytest.fixture
def held_out(tmp_path):
    data = tmp_path / "held_out"
    write_shared_layout(data, n_per_type=2)
    return data


def _new_case_runs(seed: int) -> dict[str, SegmentationRun]:
    case = make_case(patient=f"LC-{seed}", seed=seed, size=64)
    return {r.model_version.slot: r for r in services.segmentation_runs_create_for_case(case=case)}


def _entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(event="model.changed").order_by("id"))


def _promoted(candidate: ModelVersion, *, replacing: ModelVersion) -> dict:
    """``promote_model`` the candidate; check its one audit entry and return the entry's detail."""
    before = len(_entries())
    call_command("promote_model", candidate.name)
    promoted = _entries()[before:]
    assert len(promoted) == 1 and promoted[0].object_pk == str(candidate.pk)
    detail = promoted[0].additional_data
    assert detail["action"] == "promote" and detail["replaces"] == replacing.weights_key
    return detail


def _stages() -> dict:
    return {v.pk: (v.name, v.stage, v.is_active, v.file_sha256) for v in ModelVersion.objects.all()}


def test_a_candidate_never_serves_before_promotion(served, tmp_path):
    active = ModelVersion.objects.get(name="tiny_unet")
    out = StringIO()
    call_command("register_candidate", str(_candidate_bundle(tmp_path, threshold=0.0)), stdout=out)
    candidate = ModelVersion.objects.get(slot="tiny_unet", stage="candidate")
    assert f"registered candidate {candidate.name} for slot tiny_unet" in out.getvalue()

    assert (candidate.stage, candidate.is_active, candidate.slot) == ("candidate", False, "tiny_unet")
    assert candidate.name == candidate.weights_key == f"tiny_unet@{candidate.file_sha256[:12]}"
    assert candidate.file_path == f"candidates/tiny_unet-{candidate.file_sha256[:12]}.keras"
    assert (served / candidate.file_path).is_file() and candidate.file_sha256 != active.file_sha256
    assert _new_case_runs(1)["tiny_unet"].model_version == active
    assert services.weights_used(ModelVersion.objects.get(name="ensemble")).count(candidate.weights_key) == 0
    assert services.primary_model_version().name == "ensemble"
    with pytest.raises(LifecycleError, match="already recorded as tiny_unet@"):
        candidate_register(path=served / candidate.file_path)


def test_a_worse_candidate_is_refused_with_the_figures(served, tmp_path, held_out):
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=1.5))  # empty masks
    with pytest.raises(CommandError, match="no evaluation"):
        call_command("promote_model", candidate.name)

    evaluation = candidate_evaluate(candidate=candidate, data_dir=held_out, held_out=FOLD)
    assert evaluation["active"] == ModelVersion.objects.get(name="tiny_unet").weights_key
    assert evaluation["dice"]["candidate"]["missed"] == evaluation["n"] > 0
    assert evaluation["dice_diff"] < 0 and evaluation["ci95"][1] < 0
    with pytest.raises(CommandError) as refused:
        call_command("promote_model", "tiny_unet")  # the slot's only candidate
    message = str(refused.value)
    assert message.startswith(f"Refused: {candidate.name} may be worse")
    assert f"{evaluation['dice_diff']:+.4f}" in message and f"{evaluation['ci95'][0]:+.4f}" in message
    candidate.refresh_from_db()
    assert candidate.stage == "candidate" and candidate.evaluation == evaluation
    assert ModelVersion.objects.get(name="tiny_unet").stage == "active"


def test_force_needs_a_reason(served, tmp_path):
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=1.5))
    before = len(_entries())
    with pytest.raises(CommandError, match="--force needs --reason"):
        call_command("promote_model", candidate.name, "--force")
    with pytest.raises(CommandError, match="--force needs --reason"):
        call_command("promote_model", candidate.name, "--force", "--reason", "  ")
    assert len(_entries()) == before and ModelVersion.objects.get(pk=candidate.pk).stage == "candidate"
    model_promote(candidate=candidate, force=True, reason="the old file is corrupt")
    entry = _entries()[-1]
    assert (
        entry.additional_data["forced"] is True
        and entry.additional_data["reason"] == "the old file is corrupt"
    )


def test_promote_and_rollback_are_audited_and_switch_what_new_runs_use(served, tmp_path, held_out):
    old = ModelVersion.objects.get(name="tiny_unet")
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=0.0))  # full masks, as the old
    out = StringIO()
    call_command(
        "evaluate_candidate",
        candidate.name,
        *("--data", str(held_out), "--fold", "0", "--folds", "2", "--json", str(tmp_path / "eval.json")),
        stdout=out,
    )
    candidate.refresh_from_db()
    assert candidate.evaluation["dice_diff"] == 0.0  # not worse: promoted
    assert json.loads((tmp_path / "eval.json").read_text()) == candidate.evaluation
    assert "candidate - active (paired)" in out.getvalue() and old.weights_key in out.getvalue()

    before = len(_entries())
    detail = _promoted(candidate, replacing=old)
    assert detail["evaluation"]["dice_diff"] == 0.0 and detail["evaluation"]["n"] == candidate.evaluation["n"]
    old.refresh_from_db()
    candidate.refresh_from_db()
    assert (candidate.name, candidate.stage, candidate.is_active) == ("tiny_unet", "active", True)
    assert (old.name, old.stage, old.is_active) == (old.weights_key, "retired", False)
    assert (served / old.file_path).is_file()  # retired with its file
    assert _new_case_runs(2)["tiny_unet"].model_version == candidate

    call_command("rollback_model", "tiny_unet", "--reason", "clinicians saw worse outlines")
    rolled = _entries()[before + 1 :]
    assert len(rolled) == 1 and rolled[0].object_pk == str(old.pk)
    assert rolled[0].additional_data["action"] == "rollback"
    assert rolled[0].additional_data["replaces"] == candidate.weights_key
    assert ModelVersion.objects.get(name="tiny_unet") == old
    assert ModelVersion.objects.get(pk=candidate.pk).stage == "retired"
    assert _new_case_runs(3)["tiny_unet"].model_version == old


def test_a_cases_mask_names_its_version_after_a_rollback(served, tmp_path):
    old = ModelVersion.objects.get(name="tiny_unet")
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=0.0))
    model_promote(candidate=candidate, force=True, reason="test")
    run = _new_case_runs(4)["tiny_unet"]
    assert run_segmentation_task.apply(args=[run.pk]).get() == "done"
    run.refresh_from_db()
    assert run.weights == candidate.weights_key != old.weights_key

    model_rollback(slot="tiny_unet")
    run = SegmentationRun.objects.select_related("model_version").get(pk=run.pk)
    assert run.model_version == candidate and run.weights == candidate.weights_key
    assert run.model_version.name == candidate.weights_key  # the case page's model name says which weights


def test_sync_models_after_promote_and_rollback_changes_nothing(served, tmp_path):
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=0.0))
    model_promote(candidate=candidate, force=True, reason="test")
    after_promote, entries = _stages(), len(_entries())
    call_command("sync_models")  # the top of models/ still holds the retired tiny_unet.keras
    assert _stages() == after_promote and len(_entries()) == entries

    model_rollback(slot="tiny_unet")
    after_rollback, entries = _stages(), len(_entries())
    call_command("sync_models")
    assert _stages() == after_rollback and len(_entries()) == entries


def test_rollback_needs_a_retired_version_with_its_file(served, tmp_path):
    with pytest.raises(CommandError, match="no retired version"):
        call_command("rollback_model", "tiny_unet")
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=0.0))
    model_promote(candidate=candidate, force=True, reason="test")
    (served / "tiny_unet.keras").write_bytes(b"other weights")  # the retired version's file, overwritten
    with pytest.raises(LifecycleError, match="no retired version with its file intact"):
        model_rollback(slot="tiny_unet")


def test_train_model_refuses_to_write_into_the_served_models_directory(served):
    with pytest.raises(CommandError, match="is the models directory"):
        call_command("train_model", "--architecture", "unet", "--output-dir", str(served))


def test_new_weights_at_the_top_of_models_after_a_promotion_wait_as_a_candidate(served, tmp_path):
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=0.0))
    model_promote(candidate=candidate, force=True, reason="test")
    retrain_bundle(served, "tiny_unet", seed=99)  # a bundle copied over the retired one at the top
    services.model_versions_sync()
    assert ModelVersion.objects.get(name="tiny_unet") == candidate  # still served
    waiting = ModelVersion.objects.get(slot="tiny_unet", stage="candidate")
    assert waiting.file_path == "tiny_unet.keras" and not waiting.is_active


def test_the_held_out_split_is_the_patients_both_models_held_out(tmp_path):
    write_shared_layout(tmp_path, n_per_type=10)
    records = read_records(tmp_path)
    metas = [{"training": {"split": {"seed": 1}}}, {"training": {"split": {"seed": 2}}}]
    ids = HeldOut(split="test").ids(records, metas)
    one, two = (set(split_ids_as_trained(records, m["training"]["split"], "test")) for m in metas)
    assert set(ids) == one & two and one != two
    assert HeldOut(split="test").ids(records, metas[:1] * 2) == [r.id for r in records if r.id in one]
    with pytest.raises(LifecycleError, match=r"--fold must be in 0\.\.1"):
        HeldOut(split=None, fold=2, folds=2).ids(records, metas)


def _clinician_outlines(n: int, *, user) -> list:
    """``n`` uploaded cases whose outline a clinician then drew (a disc where the synthetic tumour is)."""
    cases = []
    for i in range(n):
        kwargs = synthetic_case_kwargs(("meningioma", "glioma", "pituitary")[i % 3], i, size=64)
        case = make_case(patient=f"REC-{i}", **kwargs)
        rows, cols = np.ogrid[:64, :64]
        (r, c), radius = kwargs["center"], kwargs["radius"]
        case_ground_truth_set(case=case, mask=(rows - r) ** 2 + (cols - c) ** 2 <= radius**2, user=user)
        cases.append(case)
    return cases


def test_evaluate_from_record_scores_the_outlines_clinicians_drew_after_both_models(
    served, tmp_path, clinician
):
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=1.5))  # empty masks
    imported = make_case(patient="IMP-1", seed=99, size=64, ground_truth=True)  # the dataset's mask: left out
    drawn = _clinician_outlines(4, user=clinician)
    out = StringIO()
    call_command("evaluate_candidate", candidate.name, "--from-record", "--min-slices", "4", stdout=out)
    candidate.refresh_from_db()
    evaluation = candidate.evaluation
    assert evaluation["n"] == len(drawn) and evaluation["data"] == "the clinical record"
    assert evaluation["held_out"].startswith("4 clinician-drawn outlines of the record since")
    assert evaluation["dice"]["candidate"]["missed"] == 4 and evaluation["dice_diff"] < 0
    assert "4 clinician-drawn outlines" in out.getvalue()
    assert imported.mask_source == "imported"


def test_evaluate_from_record_refuses_too_few_outlines_or_outlines_older_than_the_models(
    served, tmp_path, clinician
):
    older = _clinician_outlines(3, user=clinician)
    Case.objects.filter(pk__in=[c.pk for c in older]).update(
        mask_updated_at=timezone.now() - timedelta(days=1)
    )
    candidate = candidate_register(path=_candidate_bundle(tmp_path, threshold=0.0))
    _clinician_outlines(2, user=clinician)  # after both models: 2 of the 5 count
    with pytest.raises(CommandError, match=r"holds 2 outline\(s\) drawn by clinicians since .* at least 3"):
        call_command("evaluate_candidate", candidate.name, "--from-record", "--min-slices", "3")
    candidate.refresh_from_db()
    assert candidate.evaluation is None
    with pytest.raises(CommandError, match="takes no --fold"):
        call_command("evaluate_candidate", candidate.name, "--from-record", "--fold", "0")


def test_export_cases_refuses_a_since_without_a_time_zone(tmp_path):
    with pytest.raises(CommandError, match="not an ISO 8601 time with a time zone"):
        call_command("export_cases", str(tmp_path), "--since", "2026-12-01")


# === The type classifier: the same steps, in its own slot ===


@pytest.fixture
def classifier_served(served, settings):
    """The tiny segmenters serve, and a classifier that types every slice glioma, recorded by sync_models
    from where TUMORSITE_TYPE_CLASSIFIER points."""
    bundle = tiny_type_classifier_bundle(served / "type_classifier", "type_classifier", says="glioma")
    settings.TUMORSITE_TYPE_CLASSIFIER = str(bundle)
    settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT = 1.0
    services.model_versions_sync()
    return ModelVersion.objects.get(slot="type_classifier", stage="active")


@pytest.fixture
def gliomas(tmp_path):
    """Held-out slices that are all glioma: a classifier that says glioma is right on each of them."""
    data = tmp_path / "gliomas"
    rows = [r for r in write_shared_layout(data, n_per_type=4) if r["label_name"] == "glioma"]
    with (data / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return data


def _classifier_candidate(tmp_path, *, says: str, seed: int):
    folder = tmp_path / f"classifier-{says}-{seed}"
    return candidate_register(
        path=tiny_type_classifier_bundle(folder, "type_classifier", says=says, seed=seed)
    )


def _served_classifier_says(seed: int) -> tuple[str, str]:
    """What the served classifier makes of a slice, and the weights key a suggestion records for it."""
    classifier, version = type_classifier_served()
    opinion = classifier.predict(synthetic_slice(64, center=(32, 32), radius=8, seed=seed)[0])
    return max(opinion, key=opinion.get), version


def test_the_classifier_has_its_own_slot_and_never_outlines(classifier_served, served):
    assert (classifier_served.name, classifier_served.kind) == ("type_classifier", "type_classifier")
    assert classifier_served.file_path == "type_classifier/type_classifier.keras"
    assert classifier_served.is_active and not classifier_served.is_ensemble
    added = [e for e in _entries() if e.object_pk == str(classifier_served.pk)]
    assert [e.additional_data["change"] for e in added] == ["added"]

    runs = set(_new_case_runs(20))
    assert "type_classifier" not in runs and "ensemble" in runs
    assert runs == {
        v.slot for v in ModelVersion.objects.filter(is_active=True).exclude(pk=classifier_served.pk)
    }
    assert "type_classifier" not in ModelVersion.objects.get(name="ensemble").members
    assert services.primary_model_version().name == "ensemble"
    assert check_models().status == OK
    assert _served_classifier_says(21) == ("glioma", classifier_served.weights_key)


def test_a_classifier_candidate_never_serves_before_promotion(classifier_served, tmp_path):
    candidate = _classifier_candidate(tmp_path, says="meningioma", seed=9)
    assert (candidate.slot, candidate.kind, candidate.stage, candidate.is_active) == (
        "type_classifier",
        "type_classifier",
        "candidate",
        False,
    )
    assert candidate.file_path == f"candidates/type_classifier-{candidate.file_sha256[:12]}.keras"
    assert _served_classifier_says(22) == ("glioma", classifier_served.weights_key)
    assert "type_classifier" not in _new_case_runs(23)
    with pytest.raises(LifecycleError, match="is a type classifier, but slot tiny_unet holds segmenters"):
        candidate_register(
            path=tiny_type_classifier_bundle(tmp_path / "elsewhere", "tc", says="glioma"), slot="tiny_unet"
        )


def test_a_classifier_that_reads_the_outline_cannot_become_a_candidate(classifier_served, tmp_path):
    spec = {**TINY_TYPE_CLASSIFIER_SPEC, "tumour_input": True}
    bundle = tiny_type_classifier_bundle(tmp_path / "region", "type_classifier", meta={"spec": spec})
    with pytest.raises(SegmentationError, match="reads the tumour's outline"):
        candidate_register(path=bundle)
    assert not ModelVersion.objects.filter(stage="candidate").exists()


def test_a_worse_classifier_is_refused_with_the_figures(classifier_served, tmp_path, gliomas):
    candidate = _classifier_candidate(tmp_path, says="meningioma", seed=9)
    evaluation = candidate_evaluate(candidate=candidate, data_dir=gliomas, held_out=FOLD)
    assert evaluation["metric"] == "accuracy" and evaluation["n"] > 0
    assert (
        evaluation["accuracy"]["active"]["mean"] == 1.0 and evaluation["accuracy"]["candidate"]["mean"] == 0.0
    )
    assert evaluation["accuracy_diff"] == -1.0 and evaluation["ci95"] == [-1.0, -1.0]
    with pytest.raises(CommandError) as refused:
        call_command("promote_model", candidate.name)
    assert str(refused.value).startswith(
        f"Refused: {candidate.name} may be worse than {classifier_served.weights_key}. Accuracy difference "
        "-1.0000 (95% CI -1.0000 to -1.0000)"
    )
    assert _served_classifier_says(24) == ("glioma", classifier_served.weights_key)
    with pytest.raises(
        LifecycleError, match="is a type classifier: the record's outlines compare segmenters"
    ):
        services.lifecycle.candidate_evaluate_on_record(candidate=candidate)


def test_classifier_promote_and_rollback_are_audited_and_switch_the_suggestion(
    classifier_served, tmp_path, gliomas
):
    old = classifier_served
    candidate = _classifier_candidate(tmp_path, says="glioma", seed=11)  # right as often as the old one
    out = StringIO()
    call_command(
        "evaluate_candidate",
        candidate.name,
        *("--data", str(gliomas), "--fold", "0", "--folds", "2"),
        stdout=out,
    )
    assert "mean Accuracy" in out.getvalue() and old.weights_key in out.getvalue()
    before = len(_entries())
    detail = _promoted(candidate, replacing=old)
    assert detail["evaluation"]["metric"] == "accuracy" and detail["evaluation"]["accuracy_diff"] == 0.0
    assert _served_classifier_says(25) == ("glioma", candidate.weights_key)
    assert ModelVersion.objects.get(pk=old.pk).stage == "retired"

    call_command("rollback_model", "type_classifier", "--reason", "typed worse in clinic")
    rolled = _entries()[before + 1 :]
    assert len(rolled) == 1 and rolled[0].additional_data["action"] == "rollback"
    assert _served_classifier_says(26) == ("glioma", old.weights_key)
    call_command("sync_models", stdout=StringIO())  # the setting still names the old file: nothing changes
    assert ModelVersion.objects.get(slot="type_classifier", stage="active") == old
