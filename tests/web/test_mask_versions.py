"""The outline history on the case page: every version listed and downloadable, a restore adds one."""

import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from audit.models import AuditEntry
from cases.models import Case, MaskSource, MaskVersion
from cases.review import case_mask_correct
from segmentation.testing import make_case, synthetic_slice
from tests.web.builders import current_revision

pytestmark = pytest.mark.django_db


def _png_mask(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L")) > 0


@pytest.fixture
def corrected_twice(media_dir, owner, colleague) -> Case:
    """An imported case (its expert mask is version 1), then corrected by two clinicians (2 and 3)."""
    case = make_case(user=owner, patient="HIST-1", seed=5, ground_truth=True, tumour_type="glioma")
    first = np.zeros((96, 96), bool)
    first[10:20, 10:20] = True
    case_mask_correct(case=case, mask=first, user=owner)
    second = np.zeros((96, 96), bool)
    second[30:36, 30:36] = True
    case_mask_correct(case=case, mask=second, user=colleague)
    case.refresh_from_db()
    return case


def test_the_case_page_lists_every_version_with_who_when_and_area(
    owner_client, corrected_twice, owner, colleague
):
    html = owner_client.get(f"/cases/{corrected_twice.pk}/").content.decode()
    history = html[html.index('id="mask-history"') :]
    history = history[: history.index("</section>")]
    rows = history.split("<tr")[2:]  # after the header row
    assert len(rows) == 3
    assert "Imported with the dataset" in rows[0] and f"<td>{owner.username}</td>" in rows[0]
    assert "Corrected by a clinician" in rows[1] and "100 px" in rows[1]
    assert f"<td>{colleague.username}</td>" in rows[2] and "36 px" in rows[2]
    assert "In use · feeds the similar-case base" in rows[2] and "In use" not in rows[0] + rows[1]
    for number in (1, 2, 3):
        assert reverse("case-mask-version", args=[corrected_twice.pk, number, "png"]) in history
        assert reverse("case-mask-version", args=[corrected_twice.pk, number, "nii.gz"]) in history
    restore_forms = [reverse("case-mask-restore", args=[corrected_twice.pk, n]) for n in (1, 2, 3)]
    assert [url in history for url in restore_forms] == [True, True, False]


def test_an_area_is_in_mm2_when_the_pixel_spacing_is_known(owner_client, corrected_twice):
    corrected_twice.scan.pixel_spacing_mm = 0.5
    corrected_twice.scan.save()
    html = owner_client.get(f"/cases/{corrected_twice.pk}/").content.decode()
    assert "25.0 mm²" in html and "9.0 mm²" in html  # 100 px and 36 px at 0.5 mm by 0.5 mm


def test_the_expert_mask_and_every_version_still_download(owner_client, corrected_twice):
    _, expert = synthetic_slice(96, center=(48, 48), radius=10, seed=5)
    png = owner_client.get(reverse("case-mask-version", args=[corrected_twice.pk, 1, "png"]))
    assert png.status_code == 200
    assert (
        png["Content-Disposition"] == f'attachment; filename="case{corrected_twice.pk}_mask_v1_imported.png"'
    )
    np.testing.assert_array_equal(_png_mask(png), expert)
    second = _png_mask(owner_client.get(reverse("case-mask-version", args=[corrected_twice.pk, 2, "png"])))
    assert second.sum() == 100 and second[10:20, 10:20].all()
    nifti = owner_client.get(reverse("case-mask-version", args=[corrected_twice.pk, 3, "nii.gz"]))
    assert nifti.status_code == 200 and nifti["Content-Type"] == "application/gzip"
    in_use = owner_client.get(reverse("case-mask", args=[corrected_twice.pk, "png"]))
    assert _png_mask(in_use).sum() == 36
    assert (
        owner_client.get(reverse("case-mask-version", args=[corrected_twice.pk, 9, "png"])).status_code == 404
    )


def test_restoring_the_expert_mask_adds_a_version_and_says_so(owner_client, corrected_twice, owner):
    url = reverse("case-mask-restore", args=[corrected_twice.pk, 1])
    response = owner_client.post(url, {"revision": current_revision(corrected_twice)}, follow=True)
    assert response.redirect_chain[-1][0] == f"/cases/{corrected_twice.pk}/#mask-history"
    assert "Version 1 restored as version 4" in response.content.decode()
    corrected_twice.refresh_from_db()
    restored = corrected_twice.mask_version
    assert (restored.number, restored.source, restored.restored_from.number) == (4, MaskSource.RESTORED, 1)
    assert MaskVersion.objects.filter(case=corrected_twice).count() == 4
    in_use = _png_mask(owner_client.get(reverse("case-mask", args=[corrected_twice.pk, "png"])))
    expert = _png_mask(owner_client.get(reverse("case-mask-version", args=[corrected_twice.pk, 1, "png"])))
    np.testing.assert_array_equal(in_use, expert)
    [entry] = AuditEntry.objects.filter(event="mask.restored")
    assert (entry.actor, entry.object_pk) == (owner, str(corrected_twice.pk))
    assert entry.additional_data == {"version": 4, "restored_from": 1}


def test_restoring_the_version_in_use_is_refused_with_a_message(owner_client, corrected_twice):
    url = reverse("case-mask-restore", args=[corrected_twice.pk, 3])
    response = owner_client.post(url, {"revision": current_revision(corrected_twice)}, follow=True)
    assert "already this case&#x27;s outline in use" in response.content.decode()
    assert MaskVersion.objects.filter(case=corrected_twice).count() == 3
    assert not AuditEntry.objects.filter(event="mask.restored").exists()


def test_a_restore_from_a_stale_page_saves_nothing(owner_client, corrected_twice):
    url = reverse("case-mask-restore", args=[corrected_twice.pk, 1])
    stale = current_revision(corrected_twice) - 1
    response = owner_client.post(url, {"revision": stale}, follow=True)
    assert "Nothing was saved" in response.content.decode()
    assert MaskVersion.objects.filter(case=corrected_twice).count() == 3


def test_a_viewer_sees_the_history_but_cannot_restore(client, viewer, corrected_twice):
    client.force_login(viewer)
    html = client.get(f"/cases/{corrected_twice.pk}/").content.decode()
    assert 'id="mask-history"' in html and "case-mask-restore" not in html
    assert reverse("case-mask-restore", args=[corrected_twice.pk, 1]) not in html
    assert client.get(reverse("case-mask-version", args=[corrected_twice.pk, 1, "png"])).status_code == 200
    url = reverse("case-mask-restore", args=[corrected_twice.pk, 1])
    assert client.post(url, {"revision": current_revision(corrected_twice)}).status_code == 403
    assert MaskVersion.objects.filter(case=corrected_twice).count() == 3


def test_restore_is_a_post(owner_client, corrected_twice):
    assert owner_client.get(reverse("case-mask-restore", args=[corrected_twice.pk, 1])).status_code == 405


def test_the_report_names_the_version_it_shows(owner_client, corrected_twice, colleague):
    html = owner_client.get(reverse("case-report", args=[corrected_twice.pk])).content.decode()
    assert f"Mask version 3: corrected by a clinician, {colleague.username}," in html


def test_a_restored_outline_counts_as_a_clinicians_in_the_list(owner_client, corrected_twice, owner):
    owner_client.post(
        reverse("case-mask-restore", args=[corrected_twice.pk, 1]),
        {"revision": current_revision(corrected_twice)},
    )
    html = owner_client.get("/?status=validated").content.decode()
    assert f'href="/cases/{corrected_twice.pk}/"' in html
    assert "Earlier outline restored by a clinician" in html
