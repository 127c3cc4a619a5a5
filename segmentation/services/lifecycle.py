"""The model lifecycle: candidate -> evaluate -> promote (or refuse) -> rollback.

A *slot* is a served name (``unet``): the name settings, the ensemble's members and the recommender look
up. Its *active* version is the row named after the slot; *candidates* and *retired* versions are named
``<slot>@<first 12 hex of the hash>`` and never serve (``ModelVersion.is_active`` is False, a database
constraint). Candidate files live in ``<models dir>/candidates/`` under a name made from their hash, so
``sync_models`` (which reads only the top of the models directory) never sees them and nothing can
overwrite them; promotion copies no file, it moves the slot's name from one row to the other. Rows are
never repointed at other weights, so a run's ``model_version`` still names the weights that made it.

The type classifier goes through the same steps in its slot ``type_classifier``; it is compared with the
active one by the share of slices typed right instead of Dice.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from pathlib import Path

import numpy as np
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.services import audit_record
from ml.data import kfold_by_patient, load_slices, read_records, split_ids_as_trained
from ml.evaluate import evaluate_masks, group_bootstrap_ci
from ml.inference import file_sha256, load_segmenter
from segmentation.models import ENSEMBLE_NAME, Kind, ModelVersion, Stage
from segmentation.services.errors import SegmentationError
from segmentation.services.registry import (
    bundle_fields,
    ensemble_refresh,
    models_dir,
    retired_name,
    version_file,
)

# A candidate is "not worse" when the lower end of the paired 95 % interval of (candidate - active) Dice
# is at least -DEFAULT_MARGIN: half a Dice point is below what a clinician sees on an outline, and well
# inside the spread between two trainings of the same recipe.
DEFAULT_MARGIN = 0.005

# What a candidate is compared on: Dice per slice for a segmenter, typed right or not for the classifier.
METRIC_NAMES = {"dice": "Dice", "accuracy": "Accuracy"}


class LifecycleError(SegmentationError):
    """A lifecycle step that cannot be done as asked; the message says why and what to do."""


def candidates_dir() -> Path:
    return models_dir() / "candidates"


def candidate_register(*, path: Path, slot: str | None = None) -> ModelVersion:
    """Record the bundle at ``path`` (``.keras`` with its ``.json``) as a candidate for ``slot`` (default:
    the bundle's own name). Its files go to ``candidates/<slot>-<hash12>.keras|.json``; nothing served
    changes. Audited (``model.changed``, action "candidate")."""
    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise LifecycleError(f"{path} is not a .keras file: pass the bundle's <name>.keras.")
    if not path.with_suffix(".json").is_file():
        raise LifecycleError(
            f"{path.with_suffix('.json')} is missing: a bundle is <name>.keras + <name>.json."
        )
    name, fields = bundle_fields(path)
    slot = slot or name
    if slot == ENSEMBLE_NAME:
        raise LifecycleError(f'"{ENSEMBLE_NAME}" is the ensemble, not a model slot: pass --replaces NAME.')
    served = ModelVersion.objects.filter(slot=slot, is_ensemble=False).exclude(kind=fields["kind"]).first()
    if served is not None:
        raise LifecycleError(
            f"{path.name} is a {Kind(fields['kind']).label.split(' (')[0].lower()}, but slot {slot} holds "
            f"{Kind(served.kind).label.split(' (')[0].lower()}s: pass --replaces with a slot of its kind."
        )
    sha = file_sha256(path)
    recorded = ModelVersion.objects.filter(slot=slot, file_sha256=sha).first()
    if recorded is not None:
        raise LifecycleError(f"These weights are already recorded as {recorded.name} ({recorded.stage}).")
    target = candidates_dir() / f"{slot}-{sha[:12]}.keras"
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.resolve() != target.resolve():
        # A bundle train_model left in candidates/ moves to its hash-named place (a later run of the same
        # name would overwrite it); one from elsewhere is copied, the original left alone.
        move = path.resolve().parent == candidates_dir().resolve()
        for source, dest in ((path, target), (path.with_suffix(".json"), target.with_suffix(".json"))):
            (shutil.move if move else shutil.copyfile)(source, dest)
    _, fields = bundle_fields(target)
    with transaction.atomic():
        candidate = ModelVersion.objects.create(
            **{
                **fields,
                "name": f"{slot}@{sha[:12]}",
                "slot": slot,
                "stage": Stage.CANDIDATE,
                "is_active": False,
            }
        )
        audit_record(
            event="model.changed",
            obj=candidate,
            changes={"stage": [None, Stage.CANDIDATE], "file_sha256": [None, sha]},
            detail={
                "action": "candidate",
                "slot": slot,
                "weights": candidate.weights_key,
                "source": str(path),
            },
        )
    return candidate


def candidate_get(name: str) -> ModelVersion:
    """The candidate named ``name`` (``slot@hash12``), or a slot's only candidate."""
    candidate = ModelVersion.objects.filter(name=name, stage=Stage.CANDIDATE).first()
    if candidate is not None:
        return candidate
    of_slot = list(ModelVersion.objects.filter(slot=name, stage=Stage.CANDIDATE).order_by("created_at"))
    if len(of_slot) == 1:
        return of_slot[0]
    waiting = ", ".join(ModelVersion.objects.filter(stage=Stage.CANDIDATE).values_list("name", flat=True))
    if of_slot:
        raise LifecycleError(f"Slot {name} has {len(of_slot)} candidates; name one: {waiting}.")
    raise LifecycleError(f"No candidate {name}; candidates: {waiting or 'none (register_candidate)'}.")


def active_of(slot: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(slot=slot, stage=Stage.ACTIVE, is_ensemble=False).first()


# Fewer clinician-drawn outlines than this say too little to promote on: the paired interval over a handful
# of patients is wide, and one odd case would decide.
MIN_RECORD_SLICES = 30


@dataclass(frozen=True)
class HeldOut:
    """Which slices of a dataset to score: a split as both models were trained, one fold of N, or (with
    ``everything``) every slice, for a folder neither model can have seen (``record_outlines_export``)."""

    split: str | None = "test"
    fold: int | None = None
    folds: int | None = None
    everything: str | None = None  # what the folder holds, for the report

    def ids(self, records, metas: list[dict]) -> list[str]:
        if self.everything:
            return [r.id for r in records]
        if self.fold is not None:
            if not self.folds or not 0 <= self.fold < self.folds:
                raise LifecycleError(f"--fold must be in 0..{(self.folds or 1) - 1} (--folds {self.folds}).")
            return kfold_by_patient(records, self.folds)[self.fold]
        # Patients held out from *both* models: each was trained with its own split of this folder.
        sets = [
            set(split_ids_as_trained(records, meta.get("training", {}).get("split", {}), self.split))
            for meta in metas
        ]
        return [r.id for r in records if all(r.id in s for s in sets)]

    def describe(self) -> str:
        if self.everything:
            return self.everything
        return f"fold {self.fold} of {self.folds}" if self.fold is not None else f"{self.split} split"


def trained_until(version: ModelVersion) -> datetime:
    """When the version's training ended (its JSON's ``training.finished_at``), else when it was recorded:
    no outline set after this can have been in its training data."""
    finished = parse_datetime(str(version.metadata.get("training", {}).get("finished_at") or ""))
    return finished if finished and finished.tzinfo else version.created_at


def record_outlines_export(
    *, candidate: ModelVersion, folder: Path, min_slices: int = MIN_RECORD_SLICES
) -> HeldOut:
    """Export to ``folder`` the record's cases whose outline a clinician drew after both the candidate and
    its slot's active version were trained (``export_cases --clinician-outlines --since``), so neither
    model saw them; refuse when fewer than ``min_slices``.

    Masks a reviewer validated are left out on purpose: the active model drew them, so they would favour it.
    """
    active = active_of(candidate.slot)
    if active is None:
        raise LifecycleError(f"Slot {candidate.slot} serves nothing to compare with.")
    since = max(trained_until(candidate), trained_until(active))
    call_command(
        "export_cases",
        str(folder),
        "--clinician-outlines",
        "--since",
        since.isoformat(),
        "--no-progress",
        stdout=StringIO(),
    )
    n = len(read_records(folder)) if (folder / "cases.csv").is_file() else 0
    if n < min_slices:
        raise LifecycleError(
            f"The record holds {n} outline(s) drawn by clinicians since {since:%Y-%m-%d %H:%M} UTC, when the "
            f"later of {active.name} and {candidate.name} was trained; at least {min_slices} are needed to "
            "compare them there. Score them on held-out dataset patients instead (--data)."
        )
    return HeldOut(
        split=None, everything=f"{n} clinician-drawn outlines of the record since {since:%Y-%m-%d}"
    )


def candidate_evaluate_on_record(
    *, candidate: ModelVersion, min_slices: int = MIN_RECORD_SLICES, limit: int | None = None
) -> dict:
    """``candidate_evaluate`` on the clinicians' outlines that neither model was trained on."""
    if candidate.kind != Kind.SEGMENTER:
        raise LifecycleError(
            f"{candidate.name} is a type classifier: the record's outlines compare segmenters. Score it on "
            "held-out dataset patients (--data)."
        )
    with tempfile.TemporaryDirectory(prefix="tumorsite-evaluate-") as tmp:
        held_out = record_outlines_export(candidate=candidate, folder=Path(tmp), min_slices=min_slices)
        evaluation = candidate_evaluate(
            candidate=candidate, data_dir=Path(tmp), held_out=held_out, limit=limit
        )
    evaluation["data"] = "the clinical record"
    candidate.evaluation = evaluation
    candidate.save(update_fields=["evaluation"])
    return evaluation


def candidate_evaluate(
    *, candidate: ModelVersion, data_dir: Path, held_out: HeldOut, limit: int | None = None
) -> dict:
    """Score the candidate and its slot's active version on the same held-out slices of ``data_dir``;
    store and return the paired comparison (per slice, candidate minus active: Dice for segmenters, typed
    right (1) or not (0) for the classifier; its mean and a 95 % interval that resamples whole patient
    groups, ``ml.evaluate.group_bootstrap_ci``)."""
    active = active_of(candidate.slot)
    if active is None:
        raise LifecycleError(
            f"Slot {candidate.slot} serves nothing to compare with: promote_model {candidate.name} "
            "--force --reason TEXT."
        )
    try:
        records = read_records(data_dir)
        ids = held_out.ids(records, [active.metadata, candidate.metadata])
        if limit:
            ids = ids[:limit]
        if not ids:
            raise LifecycleError(f"No held-out slices in {data_dir} ({held_out.describe()}).")
        slices = load_slices(data_dir, ids)
        score = _accuracy_per_slice if candidate.kind == Kind.TYPE_CLASSIFIER else _dice_per_slice
        scores = {
            role: score(version, slices) for role, version in (("active", active), ("candidate", candidate))
        }
    except (FileNotFoundError, ValueError) as exc:
        raise LifecycleError(str(exc)) from exc
    metric = "accuracy" if candidate.kind == Kind.TYPE_CLASSIFIER else "dice"
    diff = np.array(scores["candidate"]["per_slice"]) - np.array(scores["active"]["per_slice"])
    groups = [r.patient_group for r in slices.records]
    lo, hi = group_bootstrap_ci(diff, groups)
    evaluation = {
        "metric": metric,
        "active": active.weights_key,
        "candidate": candidate.weights_key,
        "data": str(data_dir),
        "held_out": held_out.describe(),
        "n": len(slices),
        "n_patient_groups": len(set(groups)),
        metric: {role: {k: v for k, v in s.items() if k != "per_slice"} for role, s in scores.items()},
        f"{metric}_diff": float(diff.mean()),
        "ci95": [lo, hi],
        "evaluated_at": timezone.now().isoformat(),
    }
    candidate.evaluation = evaluation
    candidate.save(update_fields=["evaluation"])
    return evaluation


def _dice_per_slice(version: ModelVersion, slices) -> dict:
    """A segmenter's Dice per slice at each image's size, with its own threshold and clean-up."""
    s = evaluate_masks(load_segmenter(version_file(version)).segment, slices)
    missed = int(np.sum(np.array(s["dice_per_slice"]) < 0.1))
    return {
        "mean": s["dice_mean"],
        "ci95": s["dice_ci95"],
        "by_type": s["dice_by_type"],
        "missed": missed,
        "per_slice": s["dice_per_slice"],
    }


def _accuracy_per_slice(version: ModelVersion, slices) -> dict:
    """A type classifier's right (1) or wrong (0) per slice, with its own test-time augmentation."""
    from ml.type_classification import load_type_classifier  # noqa: PLC0415 (imports the training code)

    classifier = load_type_classifier(version_file(version))
    probabilities = classifier.probabilities(slices.images)
    truth = [r.tumour_type for r in slices.records]
    predicted = [classifier.classes[i] for i in probabilities.argmax(axis=1)]
    right = np.array([p == t for p, t in zip(predicted, truth, strict=True)])
    groups = [r.patient_group for r in slices.records]
    return {
        "mean": float(right.mean()),
        "ci95": list(group_bootstrap_ci(right.astype(float), groups)),
        "by_type": {t: float(right[[x == t for x in truth]].mean()) for t in sorted(set(truth))},
        "per_slice": right.astype(float).tolist(),
    }


def model_promote(
    *,
    candidate: ModelVersion,
    margin: float = DEFAULT_MARGIN,
    force: bool = False,
    reason: str = "",
    user=None,
) -> ModelVersion:
    """Make ``candidate`` its slot's active version if its evaluation against the version now active
    shows it is not worse (the interval's lower end >= -margin), or with ``force`` and a reason. The
    previous active version retires with its file. One ``model.changed`` entry."""
    if force and not reason.strip():
        raise LifecycleError("--force needs --reason TEXT: the audit trail records why.")
    if margin < 0:
        raise LifecycleError("--margin is a difference of Dice (or accuracy) >= 0 (e.g. 0.005).")
    _file_intact(candidate)
    with transaction.atomic():
        candidate = ModelVersion.objects.select_for_update().get(pk=candidate.pk)
        if candidate.stage != Stage.CANDIDATE:
            raise LifecycleError(f"{candidate.name} is {candidate.stage}, not a candidate.")
        previous = active_of(candidate.slot)
        evaluation = candidate.evaluation or None
        if not force:
            _check_not_worse(candidate, previous, evaluation, margin)
        _slot_switch(
            to=candidate,
            current=previous,
            user=user,
            detail={
                "action": "promote",
                "evaluation": _figures(evaluation),
                "margin": margin,
                "forced": force,
                "reason": reason,
            },
        )
    return candidate


def model_rollback(*, slot: str, reason: str = "", user=None) -> ModelVersion:
    """Make the slot's most recently retired version (whose file is intact) active again; the current one
    retires. One ``model.changed`` entry."""
    with transaction.atomic():
        current = active_of(slot)
        retired = ModelVersion.objects.select_for_update().filter(slot=slot, stage=Stage.RETIRED)
        previous = next(
            (v for v in retired.order_by("-retired_at", "-pk") if _file_matches(v)),
            None,
        )
        if previous is None:
            raise LifecycleError(
                f"Slot {slot} has no retired version with its file intact to return to"
                + (f" (it serves {current.weights_key})." if current else ".")
            )
        _slot_switch(to=previous, current=current, user=user, detail={"action": "rollback", "reason": reason})
    return previous


def _check_not_worse(candidate: ModelVersion, active: ModelVersion | None, evaluation, margin: float) -> None:
    if active is None:
        raise LifecycleError(
            f"Slot {candidate.slot} serves nothing to compare with: promote with --force --reason TEXT."
        )
    if evaluation is None:
        raise LifecycleError(
            f"{candidate.name} has no evaluation: run evaluate_candidate {candidate.name} --data DIR first."
        )
    if evaluation.get("active") != active.weights_key:
        raise LifecycleError(
            f"{candidate.name} was evaluated against {evaluation.get('active')}, but {active.weights_key} "
            "is active now: run evaluate_candidate again."
        )
    lo, hi = evaluation["ci95"]
    metric = evaluation.get("metric", "dice")
    if lo < -margin:
        raise LifecycleError(
            f"Refused: {candidate.name} may be worse than {active.weights_key}. {METRIC_NAMES[metric]} "
            f"difference {evaluation[f'{metric}_diff']:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}) on "
            f"{evaluation['n']} slices "
            f"of {evaluation['n_patient_groups']} patient groups; the lower end must be >= {-margin:+.4f} "
            "(--margin). Use --force --reason TEXT to promote it anyway."
        )


def _figures(evaluation: dict | None) -> dict | None:
    if not evaluation:
        return None
    metric = evaluation.get("metric", "dice")
    keys = ("active", "candidate", "held_out", "n", "n_patient_groups", "ci95", "evaluated_at")
    return {k: evaluation.get(k) for k in keys} | {
        "metric": metric,
        f"{metric}_diff": evaluation.get(f"{metric}_diff"),
        f"{metric}_mean": {role: d["mean"] for role, d in evaluation.get(metric, {}).items()},
    }


def _file_matches(version: ModelVersion) -> bool:
    path = version_file(version)
    return path.is_file() and file_sha256(path) == version.file_sha256


def _file_intact(version: ModelVersion) -> None:
    if not _file_matches(version):
        raise LifecycleError(
            f"The file of {version.name} ({version.file_path}) is missing or holds other weights than "
            f"{version.weights_key}; register the bundle again."
        )


def _slot_switch(*, to: ModelVersion, current: ModelVersion | None, user, detail: dict) -> None:
    """``to`` becomes its slot's active version, ``current`` (if any) retires, the ensemble follows; one
    ``model.changed`` entry on ``to``. Inside the caller's transaction."""
    stage = to.stage
    if current is not None:
        _retire(current)
    _activate(to)
    ensemble_refresh()
    audit_record(
        event="model.changed",
        obj=to,
        user=user,
        changes={"stage": [stage, Stage.ACTIVE], "is_active": [False, True]},
        detail={
            "slot": to.slot,
            "weights": to.weights_key,
            "replaces": current.weights_key if current else None,
            **detail,
        },
    )


def _retire(version: ModelVersion) -> None:
    version.stage, version.is_active, version.retired_at = Stage.RETIRED, False, timezone.now()
    version.name = retired_name(version)
    version.save(update_fields=["stage", "is_active", "retired_at", "name"])


def _activate(version: ModelVersion) -> None:
    version.stage, version.is_active, version.name = Stage.ACTIVE, True, version.slot
    version.save(update_fields=["stage", "is_active", "name"])


def evaluation_table(evaluation: dict) -> str:
    """The comparison as a small text table, for the commands."""
    metric = evaluation.get("metric", "dice")
    last = "Dice<0.1" if metric == "dice" else "meningioma"
    rows = [f"{'':10} {'weights':32} {'mean ' + METRIC_NAMES[metric]:>13}  {'95% CI':>15}  {last:>10}"]
    for role in ("active", "candidate"):
        d = evaluation[metric][role]
        if metric == "dice":
            figure = f"{d['missed']:10d}"
        else:
            figure = f"{d['by_type'].get('meningioma', float('nan')):10.3f}"
        rows.append(
            f"{role:10} {evaluation[role]:32} {d['mean']:13.4f}  {d['ci95'][0]:.3f} to {d['ci95'][1]:.3f}  "
            + figure
        )
    lo, hi = evaluation["ci95"]
    rows.append(
        f"{'difference':10} {'candidate - active (paired)':32} {evaluation[f'{metric}_diff']:+13.4f}  "
        f"{lo:+.3f} to {hi:+.3f}"
    )
    rows.append(
        f"{evaluation['n']} slices of {evaluation['n_patient_groups']} patient groups "
        f"({evaluation['held_out']})"
    )
    return "\n".join(rows)


def dump(evaluation: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation, indent=2) + "\n")
