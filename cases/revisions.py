"""Conflict-safe clinical edits: every edit of a case (outline, tumour type, diagnoses) raises its revision.

A page carries the revision it was rendered with, an API client the ETag it read; the edit claims the
next revision with one conditional UPDATE inside the edit's own transaction. Whoever saves on top of a
revision they did not see gets ``CaseEditConflict`` and nothing of theirs is written (their transaction
rolls back). On PostgreSQL the UPDATE locks the case's row until the edit commits, so of two edits that
expect the same revision exactly one wins; the other re-reads the committed row and matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import F
from django.utils import dateformat, timezone

from audit.models import AuditEntry
from cases.models import Case

# The audited events that raise a case's revision: the last of them says who changed it, and when.
EDIT_EVENTS = ("mask.corrected", "mask.restored", "type.recorded", "diagnosis.added", "diagnosis.removed")

STALE_FORM_MESSAGE = (
    "This page is out of date (it was opened before the site was updated), so nothing was saved. "
    "Reload the page, then make your change again."
)


@dataclass(frozen=True)
class LastEdit:
    username: str | None
    at: datetime


class CaseEditConflict(Exception):
    """The case changed since the editor read it (``expected``; it is at ``current`` now): nothing saved.

    ``str(exc)`` is the message for a clinician on a page (which then shows the case as it is now);
    ``api_detail`` the one for an API client.
    """

    def __init__(self, *, case_id: int, expected: int, current: int, last_edit: LastEdit | None, user=None):
        self.case_id = case_id
        self.expected = expected
        self.current = current
        self.last_edit = last_edit
        self.by_same_user = bool(
            last_edit and user is not None and last_edit.username == getattr(user, "username", None)
        )
        super().__init__(self._page_message())

    def _when(self) -> str:
        return (
            dateformat.format(timezone.localtime(self.last_edit.at), "j M Y, H:i T") if self.last_edit else ""
        )

    def _who_and_when(self) -> str:
        if self.last_edit is None:
            return ""
        return f" (by {self.last_edit.username or 'a deleted account'} at {self._when()})"

    def _page_message(self) -> str:
        if self.by_same_user:
            return (
                f"You changed this case in another tab or window (at {self._when()}) after this page was "
                "opened, so nothing was saved from it. The page now shows the case as it is: check it, then "
                "make your change again if it is still needed."
            )
        return (
            f"This case was changed by someone else{self._who_and_when()} since you opened it. "
            "Nothing was saved. The page now shows the case as it is: check their change, then make yours "
            "again if it is still needed."
        )

    @property
    def api_detail(self) -> str:
        return (
            f'This case was changed{self._who_and_when()}: it is at revision "{self.current}", you sent '
            f'If-Match "{self.expected}". Nothing was saved: GET the case for its current state and ETag, '
            "then send your change again."
        )


def case_revision_claim(*, case: Case, expected: int | None, user=None) -> int:
    """Raise the case's revision by one inside the caller's transaction, and set it on ``case``.

    ``expected`` is the revision the editor saw: if the case is at another one, ``CaseEditConflict``
    (the caller's transaction must roll back, so that nothing of the edit is kept). ``None`` (an API
    client that sent no If-Match, an internal caller) checks nothing but still raises the revision, so
    that others' stale pages notice. ``user`` only words the conflict message ("you", not "someone else").
    """
    rows = Case.objects.filter(pk=case.pk)
    if expected is None:
        rows.update(revision=F("revision") + 1)
        case.revision = rows.values_list("revision", flat=True).get()
        return case.revision
    if not rows.filter(revision=expected).update(revision=F("revision") + 1):
        current = rows.values_list("revision", flat=True).get()
        raise CaseEditConflict(
            case_id=case.pk, expected=expected, current=current, last_edit=_last_edit(case), user=user
        )
    case.revision = expected + 1
    return case.revision


@contextmanager
def case_edit(*, case: Case, expected: int | None, user=None) -> Iterator[Case]:
    """One clinical edit's transaction: the revision is claimed first (``case_revision_claim``), then the
    body writes. Whatever the body raises rolls everything back, the claim included, and leaves
    ``case.revision`` as it was; so an edit that turns out to change nothing raises to undo its claim."""
    seen = case.revision
    try:
        with transaction.atomic():
            case_revision_claim(case=case, expected=expected, user=user)
            yield case
    except BaseException:
        case.revision = seen
        raise


def revision_from_form(value: str | None) -> int:
    """The revision a page's form was rendered with (its hidden ``revision`` input). A form without one
    comes from a page opened before this check existed: ``ValueError`` with ``STALE_FORM_MESSAGE``."""
    try:
        revision = int(value or "")
    except ValueError:
        raise ValueError(STALE_FORM_MESSAGE) from None
    if revision < 1:
        raise ValueError(STALE_FORM_MESSAGE)
    return revision


def _last_edit(case: Case) -> LastEdit | None:
    """Who made the case's latest audited edit, and when (None when the trail has none)."""
    entry = (
        AuditEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Case),
            object_pk=str(case.pk),
            event__in=EDIT_EVENTS,
        )
        .select_related("actor")
        .order_by("-timestamp", "-pk")
        .first()
    )
    if entry is None:
        return None
    return LastEdit(username=entry.actor.get_username() if entry.actor else None, at=entry.timestamp)
