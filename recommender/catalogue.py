"""Curating the diagnosis catalogue: merge, rename, retire (and un-retire) an entry.

An entry is never deleted: case links point at it (``CaseDiagnosis.diagnosis`` is PROTECT) and its key
keeps matching what clinicians type.
- A *merged* entry is retired with ``merged_into`` set: its case links moved to the target, and typing
  its name (or a near-duplicate of it) records the target instead. There are no chains: merging an entry
  that others were merged into re-points those to the new target.
- A *retired* entry (not merged) is no longer offered by the autocomplete and cannot be linked anew;
  the cases that already have it keep it.

Every action is one transaction that writes one audit entry (``catalogue.*``; object: the entry acted on).
"""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.services import audit_record
from cases.models import CaseDiagnosis, Diagnosis
from recommender import names


class CatalogueError(ValueError):
    """A curation or a recording the catalogue refuses; ``str(error)`` is shown to the person."""


def _locked(*diagnoses: Diagnosis) -> list[Diagnosis]:
    """Fresh copies of the entries, locked for the rest of the transaction (in id order: no deadlock)."""
    found = Diagnosis.objects.select_for_update().filter(pk__in=[d.pk for d in diagnoses]).order_by("pk")
    rows = {d.pk: d for d in found}
    return [rows[d.pk] for d in diagnoses]


def _refuse_merged(diagnosis: Diagnosis) -> None:
    if diagnosis.merged_into_id is not None:
        raise CatalogueError(
            f"“{diagnosis.name}” was merged into “{diagnosis.merged_into.name}”: curate that entry instead."
        )


# === Recording ===


def diagnosis_for_recording(
    diagnosis: Diagnosis, matched: Diagnosis | None = None
) -> tuple[Diagnosis, Diagnosis | None]:
    """The entry a name that found ``diagnosis`` is recorded as, and the entry to report as matched.

    A merged entry gives its target (reported as matched, so the clinician is told what was recorded);
    a retired one is refused. Inside a transaction the entry is locked, so a merge cannot move the case
    links while a new link to the entry it retires is being made.
    """
    if connection.in_atomic_block:
        diagnosis = (
            Diagnosis.objects.select_for_update(of=("self",))
            .select_related("merged_into")
            .get(pk=diagnosis.pk)
        )
    if diagnosis.merged_into_id is not None:
        return diagnosis.merged_into, diagnosis.merged_into
    if diagnosis.retired_at is not None:
        raise CatalogueError(
            f"“{diagnosis.name}” was retired from the diagnosis catalogue and can no longer be recorded. "
            "Choose another diagnosis, or ask an administrator to restore it."
        )
    return diagnosis, matched


def diagnosis_merge_note(*, typed: str, recorded: Diagnosis) -> str | None:
    """What to tell a clinician whose ``typed`` name was recorded as ``recorded`` because the entry it
    matched was merged into it; None when the name did not come through a merge."""
    key = names.normalise(typed)
    merged = recorded.merged_from.values_list("key", "name")
    via = next((name for other, name in merged if other == key), None)
    if via is None:
        via = names.find_near_duplicate(key, ((other, name) for other, name in merged))
    if via is None:
        return None
    return f"“{via}” was merged into “{recorded.name}” in the catalogue; recorded as “{recorded.name}”."


# === Curation ===


@transaction.atomic
def diagnosis_merge(*, source: Diagnosis, target: Diagnosis, user) -> int:
    """Move every case link of ``source`` to ``target`` and retire ``source`` as merged into it.

    A case linked to both keeps one link, with the author and time of the older one. Returns the number
    of cases whose link moved (or was joined with the target's)."""
    if source.pk == target.pk:
        raise CatalogueError("An entry cannot be merged into itself: choose another entry.")
    source, target = _locked(source, target)
    _refuse_merged(source)
    if target.merged_into_id is not None:
        raise CatalogueError(
            f"“{target.name}” was itself merged into “{target.merged_into.name}”: "
            f"merge into “{target.merged_into.name}” instead."
        )
    if target.retired_at is not None:
        raise CatalogueError(
            f"“{target.name}” is retired: restore it first, or merge into an entry that is in use."
        )
    kept = {link.case_id: link for link in CaseDiagnosis.objects.filter(diagnosis=target)}
    moved = joined = 0
    for link in CaseDiagnosis.objects.filter(diagnosis=source).order_by("pk"):
        other = kept.get(link.case_id)
        if other is None:
            CaseDiagnosis.objects.filter(pk=link.pk).update(diagnosis=target)
            moved += 1
            continue
        if link.recorded_at < other.recorded_at:  # the source's link is older: its author and time stay
            CaseDiagnosis.objects.filter(pk=other.pk).update(
                recorded_by_id=link.recorded_by_id, recorded_at=link.recorded_at
            )
        CaseDiagnosis.objects.filter(pk=link.pk).delete()
        joined += 1
    # Entries merged into the source earlier now point at the target: never a chain of merges.
    repointed = Diagnosis.objects.filter(merged_into=source).update(merged_into=target)
    source.merged_into = target
    source.retired_at = source.retired_at or timezone.now()
    source.save(update_fields=["merged_into", "retired_at"])
    audit_record(
        event="catalogue.merged",
        obj=source,
        user=user,
        changes={"merged_into": [None, target.pk]},
        detail={
            "target": target.pk,
            "target_name": target.name,
            "links_moved": moved,
            "links_joined": joined,
            "entries_repointed": repointed,
        },
    )
    return moved + joined


@transaction.atomic
def diagnosis_rename(*, diagnosis: Diagnosis, name: str, user) -> Diagnosis:
    """Give the entry a new display name; its normalised key follows, so what matches it changes too.

    Refused when the new key is another entry's (that is a merge, not a rename)."""
    display = " ".join(name.split())
    key = names.normalise(display)
    if not key:
        raise CatalogueError("A diagnosis name needs at least one letter or digit.")
    limit = Diagnosis._meta.get_field("name").max_length
    if len(display) > limit:
        raise CatalogueError(f"A diagnosis name is limited to {limit} characters.")
    (diagnosis,) = _locked(diagnosis)
    _refuse_merged(diagnosis)
    if display == diagnosis.name:
        raise CatalogueError(f"The entry is already called “{display}”.")
    other = Diagnosis.objects.filter(key=key).exclude(pk=diagnosis.pk).first()
    if other is not None:
        raise _collision(diagnosis, other)
    old_name, old_key = diagnosis.name, diagnosis.key
    diagnosis.name, diagnosis.key = display, key
    try:
        with transaction.atomic():
            diagnosis.save(update_fields=["name", "key"])
    except IntegrityError as exc:  # another entry took the key after our check
        raise _collision(diagnosis, Diagnosis.objects.get(key=key)) from exc
    audit_record(
        event="catalogue.renamed",
        obj=diagnosis,
        user=user,
        changes={"name": [old_name, display]},
        detail={"key": [old_key, key]},
    )
    return diagnosis


def _collision(diagnosis: Diagnosis, other: Diagnosis) -> CatalogueError:
    return CatalogueError(
        f"“{other.name}” (entry {other.pk}) already has that name once accents, case and punctuation are "
        f"ignored. To make them one entry, merge “{diagnosis.name}” into “{other.name}” instead."
    )


@transaction.atomic
def diagnosis_retire(*, diagnosis: Diagnosis, user, retired: bool = True) -> Diagnosis:
    """Retire the entry (``retired=False``: restore it). A retired entry is not offered and cannot be
    recorded anew; the cases that have it keep it. A merged entry stays retired."""
    (diagnosis,) = _locked(diagnosis)
    _refuse_merged(diagnosis)
    was = diagnosis.retired_at
    if retired and was is not None:
        raise CatalogueError(f"“{diagnosis.name}” is already retired.")
    if not retired and was is None:
        raise CatalogueError(f"“{diagnosis.name}” is not retired.")
    diagnosis.retired_at = timezone.now() if retired else None
    diagnosis.save(update_fields=["retired_at"])
    audit_record(
        event="catalogue.retired" if retired else "catalogue.restored",
        obj=diagnosis,
        user=user,
        changes={"retired_at": [_iso(was), _iso(diagnosis.retired_at)]},
        detail={"cases": diagnosis.case_diagnoses.count()},
    )
    return diagnosis


def _iso(when) -> str | None:
    return when.isoformat() if when else None
