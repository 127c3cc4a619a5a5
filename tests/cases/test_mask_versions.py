"""Versioned masks: a correction or a restore adds a version; no version and no stored file is ever lost."""

import threading

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import RestrictedError

from audit.models import AuditEntry
from cases.models import Case, MaskSource, MaskVersion
from cases.readers import read_image
from cases.review import MaskVersionInUse, case_mask_correct, case_mask_restore
from cases.selectors import case_ground_truth_mask, case_mask_versions, mask_version_mask
from cases.services import case_create, case_prepare, cases_save, patients_get_or_create
from cases.signals import case_outline_changed
from segmentation.testing import needs_postgres
from tests.cases.builders import png_bytes, synthetic_slice, write_figshare_mat
from tests.conftest import CaseFactory
from tests.media import isolate_media, stored_names

pytestmark = pytest.mark.django_db


def _square(size: int, top: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, top : top + side] = True
    return mask


@pytest.fixture
def imported_case(owner, tmp_path):
    """A .mat upload: its expert mask is version 1."""
    image = np.zeros((40, 40), np.int16)
    image[5:15, 5:15] = 900
    path = write_figshare_mat(tmp_path / "3.mat", image, image > 0, label=2, pid="MR3")
    return case_create(image_file=path.read_bytes(), filename="3.mat", user=owner)


def test_an_upload_with_a_mask_gets_it_as_version_1(imported_case, owner):
    version = imported_case.mask_version
    assert (version.number, version.source, version.area_px, version.created_by) == (
        1,
        MaskSource.IMPORTED,
        100,
        owner,
    )
    assert version.file.name == imported_case.ground_truth_mask.name


def test_an_upload_without_a_mask_has_no_version(owner):
    case = case_create(image_file=png_bytes(synthetic_slice()[0]), filename="a.png", user=owner)
    assert case.mask_version is None and not MaskVersion.objects.exists()


def test_a_correction_adds_a_version_and_keeps_the_old_file(imported_case, colleague):
    expert = imported_case.mask_version
    corrected = _square(40, 10, 12)
    case = case_mask_correct(case=imported_case, mask=corrected, user=colleague)
    case.refresh_from_db()
    assert [v.number for v in case_mask_versions(case=case)] == [1, 2]
    new = case.mask_version
    assert (new.number, new.source, new.created_by, new.area_px) == (2, MaskSource.CORRECTED, colleague, 144)
    assert case.mask_source == MaskSource.CORRECTED and case.ground_truth_mask.name == new.file.name
    np.testing.assert_array_equal(case_ground_truth_mask(case=case), corrected)
    assert default_storage.exists(expert.file.name) and expert.file.name != new.file.name
    assert mask_version_mask(version=expert)[5:15, 5:15].all()


def test_the_expert_mask_is_still_there_after_two_corrections(imported_case, owner, colleague):
    expert_file = imported_case.mask_version.file.name
    case_mask_correct(case=imported_case, mask=_square(40, 0, 4), user=owner)
    case_mask_correct(case=imported_case, mask=_square(40, 20, 8), user=colleague)
    versions = list(case_mask_versions(case=imported_case))
    assert [(v.number, v.source) for v in versions] == [
        (1, MaskSource.IMPORTED),
        (2, MaskSource.CORRECTED),
        (3, MaskSource.CORRECTED),
    ]
    assert versions[0].file.name == expert_file and default_storage.exists(expert_file)
    assert int(mask_version_mask(version=versions[0]).sum()) == 100
    assert len({v.file.name for v in versions}) == 3


def test_restore_adds_a_version_equal_to_the_chosen_one(
    imported_case, owner, colleague, django_capture_on_commit_callbacks
):
    case_mask_correct(case=imported_case, mask=_square(40, 0, 4), user=owner)
    expert = MaskVersion.objects.get(case=imported_case, number=1)
    described = []
    case_outline_changed.connect(receiver := lambda **kw: described.append(kw["case"].pk), weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            case = case_mask_restore(case=imported_case, version=expert, user=colleague)
    finally:
        case_outline_changed.disconnect(receiver)
    case.refresh_from_db()
    restored = case.mask_version
    assert (restored.number, restored.source, restored.restored_from, restored.created_by) == (
        3,
        MaskSource.RESTORED,
        expert,
        colleague,
    )
    assert restored.area_px == expert.area_px == 100
    np.testing.assert_array_equal(mask_version_mask(version=restored), mask_version_mask(version=expert))
    np.testing.assert_array_equal(case_ground_truth_mask(case=case), mask_version_mask(version=expert))
    assert case.mask_source == MaskSource.RESTORED and case.in_case_base
    assert described == [case.pk]
    assert MaskVersion.objects.filter(case=case).count() == 3


def test_restoring_the_version_in_use_or_another_cases_is_refused(imported_case, owner):
    with pytest.raises(MaskVersionInUse, match="already"):
        case_mask_restore(case=imported_case, version=imported_case.mask_version, user=owner)
    other = CaseFactory()
    with pytest.raises(ValueError, match="not one of"):
        case_mask_restore(case=other, version=imported_case.mask_version, user=owner)
    assert MaskVersion.objects.count() == 1


def test_numbers_stay_unique_when_two_corrections_come_from_stale_copies(imported_case, owner, colleague):
    first = Case.objects.get(pk=imported_case.pk)
    second = Case.objects.get(pk=imported_case.pk)  # loaded before the first correction is saved
    case_mask_correct(case=first, mask=_square(40, 0, 4), user=owner)
    case_mask_correct(case=second, mask=_square(40, 20, 4), user=colleague)
    numbers = list(MaskVersion.objects.filter(case=imported_case).values_list("number", flat=True))
    assert numbers == [1, 2, 3]
    assert Case.objects.get(pk=imported_case.pk).mask_version.created_by == colleague


def test_a_ground_truth_from_before_versions_is_kept_as_version_1(owner):
    case = CaseFactory(with_mask=True)  # a ground truth without a version row
    old_file = case.ground_truth_mask.name
    case_mask_correct(case=case, mask=_square(64, 0, 5), user=owner)
    first, second = case_mask_versions(case=case)
    assert (first.number, first.source, first.file.name) == (1, MaskSource.IMPORTED, old_file)
    assert first.area_px and second.number == 2 and default_storage.exists(old_file)


def test_a_failed_correction_leaves_no_version_and_no_file(imported_case, owner, settings, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("cases.services.mask_version_add", broken)
    before = stored_names()
    with pytest.raises(RuntimeError):
        case_mask_correct(case=imported_case, mask=_square(40, 0, 4), user=owner)
    assert stored_names() == before
    assert MaskVersion.objects.count() == 1


def test_each_correction_and_restore_writes_one_audit_entry(imported_case, owner, colleague):
    case_mask_correct(case=imported_case, mask=_square(40, 0, 4), user=owner)
    expert = MaskVersion.objects.get(case=imported_case, number=1)
    case_mask_restore(case=imported_case, version=expert, user=colleague)
    entries = list(AuditEntry.objects.filter(event__startswith="mask.").order_by("pk"))
    assert [(e.event, e.actor, e.object_pk) for e in entries] == [
        ("mask.corrected", owner, str(imported_case.pk)),
        ("mask.restored", colleague, str(imported_case.pk)),
    ]
    assert entries[0].additional_data == {"version": 2, "restored_from": None}
    assert entries[1].additional_data == {"version": 3, "restored_from": 1}
    assert entries[1].changes == {"mask_version": [2, 3]}


def test_a_bulk_import_gives_every_case_with_a_mask_its_version_1(owner):
    patient = patients_get_or_create(identifiers=["BULK"])["BULK"]
    prepared = []
    for seed, with_mask in enumerate([True, False, True]):
        image, lesion = synthetic_slice(radius=4 + seed)
        data = png_bytes(image)
        prepared.append(
            case_prepare(
                image=read_image(data, "s.png"),
                data=data,
                filename=f"s{seed}.png",
                patient=patient,
                user=owner,
                mask=lesion if with_mask else None,
            )
        )
    cases = cases_save(prepared)
    versions = {v.case_id: v for v in MaskVersion.objects.all()}
    assert set(versions) == {cases[0].pk, cases[2].pk}
    for case in Case.objects.filter(pk__in=[c.pk for c in cases]):
        if case.pk not in versions:
            assert case.mask_version is None and not case.ground_truth_mask
            continue
        version = versions[case.pk]
        assert case.mask_version_id == version.pk and version.file.name == case.ground_truth_mask.name
        assert (version.number, version.source) == (1, MaskSource.IMPORTED)
        assert version.area_px == int(case_ground_truth_mask(case=case).sum()) > 0


def test_deleting_a_case_deletes_its_versions_but_a_version_in_use_cannot_go_alone(imported_case, owner):
    case_mask_correct(case=imported_case, mask=_square(40, 0, 4), user=owner)
    expert = MaskVersion.objects.get(case=imported_case, number=1)
    case_mask_restore(case=imported_case, version=expert, user=owner)
    with pytest.raises(RestrictedError):
        MaskVersion.objects.get(case=imported_case, number=3).delete()  # in use
    with pytest.raises(RestrictedError):
        expert.delete()  # version 3 was restored from it
    Case.objects.filter(pk=imported_case.pk).delete()
    assert not MaskVersion.objects.exists()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_corrections_at_once_both_get_their_own_number(owner, colleague, settings, tmp_path):
    isolate_media(settings, tmp_path)  # services tests share the media otherwise
    case = case_create(image_file=png_bytes(synthetic_slice(40, 40)[0]), filename="race.png", user=owner)
    barrier, outcome = threading.Barrier(2, timeout=20), {}

    def correct(user, top: int):
        try:
            barrier.wait()
            case_mask_correct(case=Case.objects.get(pk=case.pk), mask=_square(40, top, 4), user=user)
            outcome[user.username] = "saved"
        except Exception as exc:
            outcome[user.username] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=correct, args=args) for args in ((owner, 0), (colleague, 20))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome == {owner.username: "saved", colleague.username: "saved"}
    versions = list(MaskVersion.objects.filter(case=case).order_by("number"))
    assert [v.number for v in versions] == [1, 2] and {v.created_by for v in versions} == {owner, colleague}
    assert Case.objects.get(pk=case.pk).mask_version == versions[-1]
    assert AuditEntry.objects.filter(event="mask.corrected", object_pk=str(case.pk)).count() == 2
