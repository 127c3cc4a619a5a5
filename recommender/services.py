"""Writes for the recommender: case features, the scaler, type suggestions, and the diagnosis catalogue."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from cases.models import Case, CaseDiagnosis, Diagnosis, TypeSource
from cases.revisions import case_edit
from cases.selectors import case_ground_truth_mask, case_pixels
from ml.postprocess import largest_region
from recommender import features as feature_extractor
from recommender import names, ranking
from recommender.analysis import judge_slice, mask_outlier_flags
from recommender.catalogue import diagnosis_for_recording
from recommender.models import (
    EMBEDDING_DIM,
    AnalysisStatus,
    CaseAnalysis,
    CaseFeatures,
    DescriptionRequest,
    FeatureScaler,
    MaskKind,
)
from recommender.selectors import case_base, current_scaler, query_for_case, type_neighbours, type_vote
from segmentation.models import ModelVersion, ReviewStatus, RunStatus, SegmentationRun
from segmentation.selectors import load_mask
from segmentation.services import (
    best_per_architecture,
    primary_model_version,
    segmenter,
    type_classifier_version,
    val_dice,
    version_file,
    weights_problem,
)

logger = logging.getLogger(__name__)


# === Describing a slice ===

_warned_embedding_models: set[str] = set()


def embedding_model_version():
    """The segmenter whose bottleneck gives the learned embedding: TUMORSITE_EMBEDDING_MODEL when it names
    an active single model, else the primary model, or the ensemble's best member (an ensemble has no
    bottleneck of its own)."""
    wanted = getattr(settings, "TUMORSITE_EMBEDDING_MODEL", "")
    if wanted:
        version = (
            ModelVersion.objects.segmenters().filter(name=wanted, is_active=True, is_ensemble=False).first()
        )
        if version is not None:
            return version
        if wanted not in _warned_embedding_models:  # once per process, not once per upload
            _warned_embedding_models.add(wanted)
            logger.warning(
                "TUMORSITE_EMBEDDING_MODEL=%r is not an active single model; using the default", wanted
            )
    primary = primary_model_version()
    if primary is None or not primary.is_ensemble:
        return primary
    members = list(ModelVersion.objects.filter(name__in=primary.members))
    if not members:
        return None
    return max(best_per_architecture(members), key=val_dice)


def case_base_staleness() -> str | None:
    """Why the case base's embeddings no longer match the embedding model's weights, or None.

    Only the embedding model matters: base cases are described from their ground-truth masks, so new
    weights for any other segmenter leave the stored features valid.
    """
    current = current_scaler()
    if current is None or not current[0].embedding_model:
        return None
    version = embedding_model_version()
    wanted = version.weights_key if version else ""
    if wanted == current[0].embedding_model:
        return None
    return (
        f"the case base's embeddings come from {current[0].embedding_model}, but the embedding model is now "
        f"{wanted or 'none'}: run build_case_base (until then similar-case search leaves embeddings out)"
    )


def describe_slice(
    image: np.ndarray, mask: np.ndarray, *, embed_version=None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(hand-made features, learned embedding or None, the embedding model's weights key).

    The key (``name@hash``) changes when that model's weights do, so embeddings from old weights are
    never mixed with new ones: ``combine`` leaves them out until ``build_case_base`` refits the scaler.
    """
    feats = feature_extractor.extract(image, mask)
    if embed_version is None:
        return feats, None, ""
    embedding = segmenter(embed_version).embed(image, mask)
    return feats, np.asarray(embedding, dtype=np.float32), embed_version.weights_key


def combine(
    feats: np.ndarray,
    embedding: np.ndarray | None,
    embedding_model: str,
    scaler_row: FeatureScaler,
    scaler: ranking.Scaler,
) -> np.ndarray:
    usable = embedding if embedding_model and embedding_model == scaler_row.embedding_model else None
    return scaler.transform(feats, usable)


def outline_from_probability(prob: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The model's own mask, or when that is empty, the largest region above half the map's peak.

    For the offline retrieval studies only (recommender.evaluation, recommender.tuning): the app
    describes a case by the mask it shows, and an empty one means "no tumour found" (recommender.analysis).
    """
    if mask.any() or prob is None or float(prob.max()) < 0.05:
        return mask
    return largest_region(prob >= 0.5 * float(prob.max()))


def case_outline_run(runs, primary_id: int | None) -> SegmentationRun | None:
    """The AI run whose mask outlines a case that has no ground truth: a validated run (the primary
    model's first), else the primary model's run unless a clinician rejected it; None when there is none.
    A rejected mask is never the case's outline: the case waits for a clinician's.

    ``runs`` are the case's runs (any order); takes no query, so lists can pass prefetched runs."""
    done = [r for r in runs if r.status == RunStatus.DONE]
    validated = [r for r in done if r.review_status == ReviewStatus.VALIDATED]
    if validated:
        return min(validated, key=lambda r: (r.model_version_id != primary_id, r.pk))
    return next(
        (r for r in done if r.model_version_id == primary_id and r.review_status != ReviewStatus.REJECTED),
        None,
    )


def case_mask(case: Case) -> tuple[np.ndarray, str] | None:
    """The best outline of the case's tumour: ground truth, else a validated AI mask, else the primary
    run's unless it was rejected (``case_outline_run``); None when there is no usable outline."""
    if case.in_case_base:
        return case_ground_truth_mask(case=case), MaskKind.GROUND_TRUTH
    primary = primary_model_version()
    run = case_outline_run(case.segmentation_runs.all(), primary.pk if primary else None)
    if run is None:
        return None
    if run.review_status == ReviewStatus.VALIDATED:
        return load_mask(run), MaskKind.VALIDATED
    # The model's own mask, even empty: a faint region below its threshold is no outline a clinician sees
    # (an abdomen slice's 650-px "outline" on the kidney came from outline_from_probability here).
    return load_mask(run), MaskKind.PRIMARY


def case_features_compute(
    *,
    case: Case,
    embed_version=None,
    use_embedding: bool = True,
    image: np.ndarray | None = None,
    found: tuple[np.ndarray, str] | None = None,
) -> CaseFeatures | None:
    """Describe the case from its best mask and store the vectors; None when it has no usable mask yet.

    ``image`` is the case's slice and ``found`` its ``case_mask`` when the caller has them already."""
    found = found if found is not None else case_mask(case)
    if found is None:
        CaseFeatures.objects.filter(case=case).delete()
        return None
    mask, kind = found
    if image is None:
        image = case_pixels(case=case)
    if use_embedding and embed_version is None:
        embed_version = embedding_model_version()
    try:
        feats, embedding, embedding_model = describe_slice(image, mask, embed_version=embed_version)
    except feature_extractor.FeatureError as exc:
        logger.info("case %s not described: %s", case.pk, exc)
        CaseFeatures.objects.filter(case=case).delete()
        return None
    in_base = (
        kind in (MaskKind.GROUND_TRUTH, MaskKind.VALIDATED)
        and bool(case.tumour_type)
        and case.tumour_type_source in (TypeSource.CLINICIAN, TypeSource.IMPORTED)
    )
    current = current_scaler()
    combined = combine(feats, embedding, embedding_model, *current) if current else None
    row, _ = CaseFeatures.objects.update_or_create(
        case=case,
        defaults={
            "extractor_version": feature_extractor.EXTRACTOR_VERSION,
            "mask_kind": kind,
            "features": feats,
            "embedding": embedding,
            "embedding_model": embedding_model,
            "combined": combined,
            "scaler": current[0] if current else None,
            "in_base": in_base,
            "tumour_type": case.tumour_type if in_base else None,
            "patient_id": case.patient_id,
        },
    )
    return row


# === Scaler ===


def feature_scaler_fit(
    *, embedding_dim: int = EMBEDDING_DIM, weights: dict | None = None
) -> FeatureScaler | None:
    """Fit on the base cases' features, make it current and recompute every stored combined vector."""
    base = list(
        CaseFeatures.objects.filter(in_base=True, extractor_version=feature_extractor.EXTRACTOR_VERSION)
    )
    if len(base) < 2:
        return None
    models = [r.embedding_model for r in base if r.embedding_model]
    embedding_model = max(set(models), key=models.count) if models else ""
    embeddings = [r.embedding if r.embedding_model == embedding_model else None for r in base]
    scaler = ranking.Scaler.fit(
        np.stack([r.features for r in base]),
        embeddings,
        [r.tumour_type for r in base],
        embedding_dim=embedding_dim,
        weights=weights,
    )
    with transaction.atomic():
        FeatureScaler.objects.update(is_current=False)
        row = FeatureScaler.objects.create(
            extractor_version=feature_extractor.EXTRACTOR_VERSION,
            embedding_model=embedding_model,
            params=scaler.to_params(),
            n_cases=len(base),
            is_current=True,
        )
        feature_vectors_recombine(scaler_row=row, scaler=scaler)
    return row


def feature_vectors_recombine(*, scaler_row: FeatureScaler, scaler: ranking.Scaler) -> int:
    rows = list(CaseFeatures.objects.all())
    for r in rows:
        r.combined = combine(r.features, r.embedding, r.embedding_model, scaler_row, scaler)
        r.scaler = scaler_row
    CaseFeatures.objects.bulk_update(rows, ["combined", "scaler", "updated_at"], batch_size=500)
    return len(rows)


# === Tumour type ===

_classifier_problems: set[str] = set()


def type_classifier_served():
    """``(the loaded classifier, its weights key)`` for the type classifier served now: the active version
    of the ``type_classifier`` slot (``sync_models`` records the bundle ``TUMORSITE_TYPE_CLASSIFIER``
    names; ``promote_model`` and ``rollback_model`` switch it). None when the setting is empty, or when no
    classifier is recorded or its file is not the one recorded: the kNN vote then decides alone, with a
    warning once per process and problem.
    """
    if not getattr(settings, "TUMORSITE_TYPE_CLASSIFIER", ""):
        return None
    # ml.type_classification brings the training code (matplotlib among it): a worker's import, not the web's.
    from ml.type_classification import load_type_classifier  # noqa: PLC0415 (only workers classify)

    version = type_classifier_version()
    problem = (
        "no active version recorded (manage.py sync_models)" if version is None else weights_problem(version)
    )
    if problem is None:
        try:
            classifier = load_type_classifier(
                version_file(version), runtime=settings.TUMORSITE_INFERENCE_RUNTIME
            )
        except (OSError, ValueError) as exc:
            problem = str(exc)
        else:
            return classifier, version.weights_key
    which = version.weights_key if version else "none recorded"
    said = f"{settings.TUMORSITE_TYPE_CLASSIFIER}: {which}: {problem}"
    if said not in _classifier_problems:
        _classifier_problems.add(said)
        logger.warning("no type classifier (%s); the type suggestion is the kNN vote alone", said)
    return None


def type_classifier():
    """The loaded classifier served now (``type_classifier_served``), or None."""
    served = type_classifier_served()
    return None if served is None else served[0]


def type_classifier_probabilities(image: np.ndarray) -> dict[str, float] | None:
    """The classifier's ``{type: probability}`` for one slice; None without a classifier."""
    classifier = type_classifier()
    return None if classifier is None else classifier.predict(image)


def case_tumour_type_suggest(*, case: Case, image: np.ndarray | None = None) -> tuple[str | None, float]:
    """The kNN vote blended with the type classifier (``ranking.blend_votes``); stored as the case's
    prediction with what it was made of, and as its type only where no one has entered one.

    The slice is read (unless ``image`` is given) only when a classifier is configured and weighted."""
    query = query_for_case(case)
    if query is None:
        return None, 0.0
    weight = float(settings.TUMORSITE_TYPE_CLASSIFIER_WEIGHT)
    served = type_classifier_served() if weight > 0 else None
    classifier, classifier_version = served if served is not None else (None, None)
    probabilities = None
    if classifier is not None:
        if image is None:
            image = case_pixels(case=case)
        probabilities = classifier.predict(image)
    voters = type_neighbours(query)
    knn = type_vote(voters)
    ttype, confidence = ranking.blend_votes(knn, probabilities, weight)
    if ttype is None:
        return None, 0.0
    rounded = lambda shares: {t: round(float(v), 4) for t, v in sorted(shares.items())}  # noqa: E731
    sources = {
        "similar_cases": rounded(knn),
        "classifier": rounded(probabilities) if probabilities else None,
        "classifier_weight": weight if probabilities else 0.0,
        "classifier_version": classifier_version if probabilities else None,
        # The voters, nearest first: the similar-cases panel shows these (selectors.suggestion_neighbours).
        "neighbours": [
            {"case": h.case_id, "tumour_type": h.tumour_type, "distance": round(float(h.distance), 6)}
            for h in voters
        ],
    }
    updates = {
        "predicted_tumour_type": ttype,
        "predicted_confidence": round(confidence, 4),
        "predicted_type_sources": sources,
    }
    Case.objects.filter(pk=case.pk).update(**updates)
    # Conditional, so a clinician's entry made meanwhile is never overwritten.
    Case.objects.filter(pk=case.pk).filter(
        Q(tumour_type_source__isnull=True) | Q(tumour_type_source=TypeSource.PREDICTED)
    ).update(tumour_type=ttype, tumour_type_source=TypeSource.PREDICTED)
    case.refresh_from_db()
    return ttype, confidence


def case_analyse(*, case: Case) -> CaseFeatures | None:
    """After a segmentation or a review: judge the slice and its outline (recommender.analysis), then
    describe the case and suggest its type (one read of the slice).

    A slice unlike the training ones, or an outline with no tumour, gets no description and no
    suggestion. Without a usable outline (e.g. its AI mask was just rejected) the case keeps no
    description and no suggestion made from the mask it had: both are cleared until a clinician outlines
    it."""
    image = case_pixels(case=case)  # called after a segmentation or a review, so a mask almost always exists
    found = case_mask(case)
    if found is None:
        CaseAnalysis.objects.filter(case=case).delete()
        CaseFeatures.objects.filter(case=case).delete()
        row = None
    else:
        status, detail = judge_slice(image, found[0], found[1])
        if status != AnalysisStatus.TUMOUR:
            CaseFeatures.objects.filter(case=case).delete()
            case_tumour_type_suggestion_clear(case=case)
            _case_analysis_store(case=case, status=status, detail=detail)
            return None
        row = case_features_compute(case=case, image=image, found=found)
        flags: list[dict] = []
        if row is not None and row.mask_kind != MaskKind.GROUND_TRUTH:
            flags, used = mask_outlier_flags(
                np.asarray(row.features),
                agreement=_case_agreement(case),
                base_agreements=_base_agreements(),
            )
            detail["outliers"] = used
        _case_analysis_store(case=case, status=status, detail=detail, flags=flags)
    if row is None:
        case_tumour_type_suggestion_clear(case=case)
    elif current_scaler() is not None:
        case_tumour_type_suggest(case=case, image=image)
    return row


def _case_analysis_store(*, case: Case, status: str, detail: dict, flags: list | None = None) -> None:
    CaseAnalysis.objects.update_or_create(
        case=case, defaults={"status": status, "detail": detail, "flags": flags or []}
    )


def _case_agreement(case: Case) -> float | None:
    """The ensemble run's agreement between its members (None without an ensemble run)."""
    return (
        SegmentationRun.objects.filter(case=case, status=RunStatus.DONE, agreement__isnull=False)
        .values_list("agreement", flat=True)
        .first()
    )


def _base_agreements() -> list[float]:
    """The ensemble's agreement on the case base's cases (those segmented by the models)."""
    return list(
        SegmentationRun.objects.filter(
            case__in=case_base(), status=RunStatus.DONE, agreement__isnull=False
        ).values_list("agreement", flat=True)
    )


def case_tumour_type_suggestion_clear(*, case: Case) -> None:
    """Forget the case's type suggestion, and its type where that was only the suggestion."""
    Case.objects.filter(pk=case.pk).update(
        predicted_tumour_type=None, predicted_confidence=None, predicted_type_sources=None
    )
    # Conditional, so a clinician's or the dataset's type is never touched.
    Case.objects.filter(pk=case.pk, tumour_type_source=TypeSource.PREDICTED).update(
        tumour_type=None, tumour_type_source=None
    )
    case.refresh_from_db()


def case_base_build(
    *, refit: bool = True, use_embedding: bool = True, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Describe every case of the base that lacks current features, then refit the scaler."""
    embed_version = embedding_model_version() if use_embedding else None
    cases = list(case_base().select_related("scan"))
    existing = {
        r.case_id: r
        for r in CaseFeatures.objects.only("case_id", "extractor_version", "embedding_model", "in_base")
    }
    wanted_model = embed_version.weights_key if embed_version else ""
    done = failed = skipped = 0
    for start in range(0, len(cases), 100):
        # One transaction per 100 cases (far fewer commits on SQLite), a savepoint per case.
        with transaction.atomic():
            for i, case in enumerate(cases[start : start + 100], start + 1):
                row = existing.get(case.pk)
                if (
                    row is not None
                    and row.extractor_version == feature_extractor.EXTRACTOR_VERSION
                    and row.embedding_model == wanted_model
                    and row.in_base
                ):
                    skipped += 1
                else:
                    try:
                        with transaction.atomic():
                            described = case_features_compute(
                                case=case, embed_version=embed_version, use_embedding=use_embedding
                            )
                        done, failed = (done + 1, failed) if described else (done, failed + 1)
                    except Exception:
                        logger.exception("could not describe case %s", case.pk)
                        failed += 1
                if progress:
                    progress(i, len(cases))
    scaler = feature_scaler_fit() if refit else None
    return {
        "described": done,
        "unchanged": skipped,
        "failed": failed,
        "scaler_cases": scaler.n_cases if scaler else 0,
    }


# === Diagnoses ===


def diagnosis_record(
    *, case: Case, name: str, user, expected_revision: int | None = None
) -> tuple[Diagnosis, bool, Diagnosis | None]:
    """Record a diagnosis on a case: (catalogue entry, newly added?, existing entry it was matched to).

    ``expected_revision``: the case's revision the clinician saw (``cases.revisions``); a stale one raises
    ``CaseEditConflict`` and writes nothing, not even a new catalogue entry. A diagnosis the case already
    has changes nothing: no new revision, no audit entry.

    - same normalised key -> that entry (``created`` False, ``matched_existing`` None);
    - a near-duplicate key (see recommender.names) -> linked to that entry, reported in ``matched_existing``;
    - otherwise a new entry marked ``added_automatically`` with its first case and author. Two doctors
      adding it at the same moment get one entry: the key is unique and the loser of the race reads
      the winner's row;
    - an entry merged into another -> that other (reported in ``matched_existing``); a retired entry
      -> refused (``recommender.catalogue.CatalogueError``, a ValueError).
    """
    display = " ".join(name.split())
    key = names.normalise(display)
    if not key:
        raise ValueError("A diagnosis needs at least one letter or digit.")
    if len(display) > Diagnosis._meta.get_field("name").max_length:
        raise ValueError("A diagnosis name is limited to 200 characters.")
    try:
        with case_edit(case=case, expected=expected_revision, user=user):
            matched = None
            diagnosis = Diagnosis.objects.filter(key=key).first()
            created = False
            if diagnosis is None:
                near = names.find_near_duplicate(key, Diagnosis.objects.values_list("key", "pk").iterator())
                if near is not None:
                    diagnosis = matched = Diagnosis.objects.get(pk=near)
            if diagnosis is None:
                diagnosis, created = _diagnosis_get_or_create(key=key, name=display, case=case, user=user)
            # merged: its target; retired: refused
            diagnosis, matched = diagnosis_for_recording(diagnosis, matched)
            if not _case_diagnosis_link(case=case, diagnosis=diagnosis, user=user):
                raise _NothingChanged((diagnosis, created, matched))
            audit_record(
                event="diagnosis.added",
                obj=case,
                user=user,
                detail={"diagnosis": diagnosis.pk, "name": diagnosis.name, "new_in_catalogue": created},
            )
    except _NothingChanged as unchanged:
        return unchanged.result
    return diagnosis, created, matched


class _NothingChanged(Exception):
    """Raised inside an edit's transaction when it turns out to change nothing: undoes its revision claim."""

    def __init__(self, result=None):
        super().__init__()
        self.result = result


def _case_diagnosis_link(*, case: Case, diagnosis: Diagnosis, user) -> bool:
    """Link the entry to the case; False when the link was there already (e.g. a double-submitted form)."""
    try:
        with transaction.atomic():
            return CaseDiagnosis.objects.get_or_create(
                case=case, diagnosis=diagnosis, defaults={"recorded_by": user}
            )[1]
    except IntegrityError:  # inserted meanwhile by an edit that claimed no revision check first
        return False


def case_diagnosis_remove(
    *, case: Case, diagnosis_id: int, user, expected_revision: int | None = None
) -> Diagnosis | None:
    """Remove a diagnosis from a case: the link goes, the catalogue entry stays (other cases may use
    it). Returns the entry that was unlinked, or None when the case had no such link (nothing changes
    then). The similar cases' and the catalogue's lists read the links when asked, so nothing is
    recomputed. ``expected_revision``: as for ``diagnosis_record``."""
    try:
        with case_edit(case=case, expected=expected_revision, user=user):
            link = (
                CaseDiagnosis.objects.select_related("diagnosis")
                .filter(case=case, diagnosis_id=diagnosis_id)
                .first()
            )
            # Two clinicians removing it at once: only the one whose DELETE took the row reports a removal.
            if link is None or not CaseDiagnosis.objects.filter(pk=link.pk).delete()[0]:
                raise _NothingChanged
            audit_record(
                event="diagnosis.removed",
                obj=case,
                user=user,
                detail={"diagnosis": link.diagnosis.pk, "name": link.diagnosis.name},
            )
    except _NothingChanged:
        return None
    logger.info(
        "diagnosis removed: user=%s case=%s diagnosis=%s (%s)",
        getattr(user, "pk", None),
        case.pk,
        link.diagnosis.pk,
        link.diagnosis.name,
    )
    return link.diagnosis


def _diagnosis_get_or_create(*, key: str, name: str, case: Case, user) -> tuple[Diagnosis, bool]:
    defaults = {
        "name": name,
        "added_automatically": True,
        "first_case": case,
        "created_by": user,
        "tumour_type": None,
    }
    try:
        with transaction.atomic():
            return Diagnosis.objects.get_or_create(key=key, defaults=defaults)
    except IntegrityError:
        # Another transaction inserted the key between our SELECT and INSERT: theirs is the entry.
        return Diagnosis.objects.get(key=key), False


# === The outbox of descriptions asked for from web requests ===


def description_request(*, case_id: int, reason: str) -> DescriptionRequest:
    """Record that the case needs describing again (``reason``: why, for the log and the admin)."""
    row, _ = DescriptionRequest.objects.update_or_create(
        case_id=case_id, defaults={"reason": reason[:100], "requested_at": timezone.now()}
    )
    return row


def description_requests_answered(*, case_id: int, started) -> None:
    """A description that started at ``started`` answers every ask made before it."""
    DescriptionRequest.objects.filter(case_id=case_id, requested_at__lte=started).delete()


def descriptions_overdue(*, lost_after) -> list[int]:
    """The cases whose description was asked for, or last sent, longer than ``lost_after`` ago (or never
    sent), oldest ask first, and the count of each such ask's sends bumped."""
    cutoff = timezone.now() - lost_after
    overdue = DescriptionRequest.objects.filter(requested_at__lt=cutoff).filter(
        Q(sent_at__isnull=True) | Q(sent_at__lt=cutoff)
    )
    case_ids = list(overdue.order_by("requested_at").values_list("case_id", flat=True))
    DescriptionRequest.objects.filter(case_id__in=case_ids).update(sends=F("sends") + 1)
    return case_ids
