"""Two clinicians open the same case; the first saves, the second saves from the page they opened before.

The second save is refused with a message that says what happened and what to do, nothing of it is
written, and they land on the case page as it is now; from that fresh page their save goes through.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.test import Client

from audit.models import AuditEntry
from cases.models import Case, CaseDiagnosis, Diagnosis, MaskVersion, TypeSource
from cases.revisions import STALE_FORM_MESSAGE
from cases.selectors import case_ground_truth_mask
from recommender.services import diagnosis_record
from tests.media import stored_names
from tests.web.builders import current_revision, mask_data_url

pytestmark = pytest.mark.django_db

CONFLICT = "This case was changed by someone else (by owner at "
NOTHING_SAVED = "Nothing was saved. The page now shows the case as it is"


@pytest.fixture
def owner_page(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def colleague_page(colleague):
    other = Client()
    other.force_login(colleague)
    return other


def _revisions_in(html: str) -> list[int]:
    return [int(v) for v in re.findall(r'<input type="hidden" name="revision" value="(\d+)"', html)]


def _opened(client: Client, url: str) -> int:
    """Open a page as a clinician would; the revision its forms carry (all the same)."""
    revisions = _revisions_in(client.get(url).content.decode())
    assert revisions and len(set(revisions)) == 1, revisions
    return revisions[0]


def test_every_form_that_edits_the_case_carries_the_pages_revision(owner_page, segmented_case, owner):
    diagnosis_record(case=segmented_case, name="Ependymoma", user=owner)
    Case.objects.filter(pk=segmented_case.pk).update(revision=7)
    html = owner_page.get(f"/cases/{segmented_case.pk}/").content.decode()
    # The type form, the diagnosis form and the one remove button.
    assert _revisions_in(html) == [7, 7, 7]
    assert _revisions_in(owner_page.get(f"/cases/{segmented_case.pk}/correct/").content.decode()) == [7]


def test_a_stale_tumour_type_is_refused_and_the_first_one_stays(
    owner_page, colleague_page, segmented_case, owner, colleague
):
    url = f"/cases/{segmented_case.pk}/"
    mine, theirs = _opened(owner_page, url), _opened(colleague_page, url)
    saved = owner_page.post(
        f"{url}tumour-type/", {"tumour_type": "meningioma", "revision": mine}, follow=True
    )
    assert "Tumour type recorded: Meningioma." in saved.content.decode()

    refused = colleague_page.post(
        f"{url}tumour-type/", {"tumour_type": "pituitary", "revision": theirs}, follow=True
    )
    html = refused.content.decode()
    assert refused.redirect_chain[-1][0] == f"{url}#tumour-type"
    assert CONFLICT in html and NOTHING_SAVED in html
    assert '<strong id="type-current">Meningioma</strong>' in html  # the page shows the winner's type
    case = Case.objects.get(pk=segmented_case.pk)
    assert (case.tumour_type, case.tumour_type_source, case.revision) == (
        "meningioma",
        TypeSource.CLINICIAN,
        2,
    )

    # From the page they land on, the colleague's change goes through.
    again = colleague_page.post(
        f"{url}tumour-type/", {"tumour_type": "pituitary", "revision": _revisions_in(html)[0]}, follow=True
    )
    assert "Tumour type recorded: Pituitary tumour." in again.content.decode()
    assert Case.objects.values_list("tumour_type", "revision").get(pk=segmented_case.pk) == ("pituitary", 3)
    entries = AuditEntry.objects.filter(event="type.recorded", object_pk=str(segmented_case.pk))
    assert [(e.actor, e.changes) for e in entries.order_by("pk")] == [
        (owner, {"tumour_type": [None, "meningioma"]}),
        (colleague, {"tumour_type": ["meningioma", "pituitary"]}),
    ]


def test_a_stale_diagnosis_add_or_remove_changes_nothing(owner_page, colleague_page, segmented_case):
    url = f"/cases/{segmented_case.pk}/"
    mine, theirs = _opened(owner_page, url), _opened(colleague_page, url)
    owner_page.post(f"{url}diagnoses/", {"name": "Ependymoma", "revision": mine})
    ependymoma = Diagnosis.objects.get(key="ependymoma")

    added = colleague_page.post(
        f"{url}diagnoses/", {"name": "Craniopharyngioma", "revision": theirs}, follow=True
    )
    html = added.content.decode()
    assert CONFLICT in html and "What you typed: “Craniopharyngioma”." in html
    assert not Diagnosis.objects.filter(key="craniopharyngioma").exists()  # not even in the catalogue

    removed = colleague_page.post(
        f"{url}diagnoses/{ependymoma.pk}/remove/", {"revision": theirs}, follow=True
    )
    assert removed.status_code == 200 and CONFLICT in removed.content.decode()
    assert list(
        CaseDiagnosis.objects.filter(case=segmented_case).values_list("diagnosis__key", flat=True)
    ) == ["ependymoma"]
    assert current_revision(segmented_case) == 2
    assert AuditEntry.objects.filter(event__startswith="diagnosis.").count() == 1


def test_a_stale_correction_stores_no_mask_and_lands_on_the_case_page(
    owner_page, colleague_page, segmented_case, settings
):
    url = f"/cases/{segmented_case.pk}/"
    mine, theirs = _opened(owner_page, f"{url}correct/"), _opened(colleague_page, f"{url}correct/")
    first, second = np.zeros((96, 96), bool), np.zeros((96, 96), bool)
    first[30:50, 40:70] = True
    second[10:20, 10:20] = True
    owner_page.post(f"{url}correct/", {"mask": mask_data_url(first), "revision": mine})
    files = stored_names("masks")

    refused = colleague_page.post(
        f"{url}correct/", {"mask": mask_data_url(second), "revision": theirs}, follow=True
    )
    assert refused.redirect_chain[-1][0] == url
    assert CONFLICT in refused.content.decode()
    case = Case.objects.get(pk=segmented_case.pk)
    assert np.array_equal(case_ground_truth_mask(case=case), first)
    assert MaskVersion.objects.filter(case=case).count() == 1 and case.revision == 2
    assert stored_names("masks") == files  # no file stored for the refused outline
    assert AuditEntry.objects.filter(event="mask.corrected").count() == 1


def test_the_same_clinician_in_two_tabs_is_told_it_was_them(owner_page, segmented_case):
    url = f"/cases/{segmented_case.pk}/"
    revision = _opened(owner_page, url)
    owner_page.post(f"{url}tumour-type/", {"tumour_type": "glioma", "revision": revision})
    html = owner_page.post(
        f"{url}tumour-type/", {"tumour_type": "meningioma", "revision": revision}, follow=True
    ).content.decode()
    assert "You changed this case in another tab or window (at " in html and "nothing was saved" in html
    assert Case.objects.get(pk=segmented_case.pk).tumour_type == "glioma"


@pytest.mark.parametrize("revision", [None, "", "two"])
def test_a_form_without_a_revision_is_refused(owner_page, segmented_case, owner, revision):
    diagnosis, _, _ = diagnosis_record(case=segmented_case, name="Ependymoma", user=owner)
    url = f"/cases/{segmented_case.pk}/"
    extra = {} if revision is None else {"revision": revision}
    posts = [
        ("tumour-type/", {"tumour_type": "meningioma"}),
        ("diagnoses/", {"name": "Craniopharyngioma"}),
        (f"diagnoses/{diagnosis.pk}/remove/", {}),
        ("correct/", {"mask": mask_data_url(np.ones((96, 96), bool))}),
    ]
    for path, data in posts:
        response = owner_page.post(url + path, {**data, **extra}, follow=True)
        assert STALE_FORM_MESSAGE in response.content.decode(), path
    case = Case.objects.get(pk=segmented_case.pk)
    assert case.tumour_type_source != TypeSource.CLINICIAN or case.tumour_type != "meningioma"
    assert [d.diagnosis.key for d in CaseDiagnosis.objects.filter(case=case)] == ["ependymoma"]
    assert not case.ground_truth_mask and case.revision == 2  # only the setup's diagnosis raised it
