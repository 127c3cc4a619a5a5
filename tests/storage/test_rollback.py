"""A file is kept only for a row that commits (issue #31, item 3): a database error after the file is
stored, in the upload, a mask correction and a segmentation result, leaves no file behind."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.db.models.query import QuerySet
from rest_framework.test import APIClient

from cases.models import Case, MaskVersion, Scan
from cases.review import case_mask_correct
from cases.services import case_create
from cases.storage import atomic_with_files, file_save
from segmentation.models import ModelVersion, RunStatus, SegmentationRun
from segmentation.services import runs as run_services
from segmentation.testing import make_case, synthetic_slice
from tests.cases.builders import png_bytes
from tests.conftest import UserFactory, with_roles
from tests.media import stored_names

pytestmark = pytest.mark.django_db


def _media_files() -> set[str]:
    return set(stored_names())


def _fail(*args, **kwargs):
    raise IntegrityError("injected after the file was stored")


# === The helper ===


def test_a_committed_block_keeps_its_file():
    with atomic_with_files():
        name = file_save("scans/kept.png", ContentFile(b"x"))
    assert _media_files() == {name}


def test_a_block_that_raises_deletes_its_file():
    with pytest.raises(IntegrityError), atomic_with_files():
        file_save("scans/lost.png", ContentFile(b"x"))
        assert _media_files() == {"scans/lost.png"}
        _fail()
    assert _media_files() == set()


def test_a_block_marked_for_rollback_deletes_its_file():
    with atomic_with_files():
        file_save("scans/lost.png", ContentFile(b"x"))
        transaction.set_rollback(True)
    assert _media_files() == set()


def test_an_inner_block_that_commits_is_undone_with_the_outer_one():
    with pytest.raises(IntegrityError), atomic_with_files():
        with atomic_with_files():
            file_save("scans/inner.png", ContentFile(b"x"))
        outer = file_save("scans/outer.png", ContentFile(b"x"))
        assert _media_files() == {"scans/inner.png", outer}
        _fail()
    assert _media_files() == set()


def test_an_inner_block_that_fails_takes_only_its_own_files():
    with atomic_with_files():
        kept = file_save("scans/outer.png", ContentFile(b"x"))
        with pytest.raises(IntegrityError), atomic_with_files():
            file_save("scans/inner.png", ContentFile(b"x"))
            _fail()
    assert _media_files() == {kept}


@pytest.mark.django_db(transaction=True)
def test_a_failed_commit_deletes_the_file(monkeypatch):
    def commit_fails():
        raise IntegrityError("deferred constraint at COMMIT")

    with pytest.raises(IntegrityError), atomic_with_files():
        file_save("scans/lost.png", ContentFile(b"x"))
        monkeypatch.setattr(connection, "commit", commit_fails)
    monkeypatch.undo()
    assert _media_files() == set()


# === The upload ===


def test_an_upload_whose_rows_fail_leaves_no_file(owner, monkeypatch):
    monkeypatch.setattr("cases.services.audit_record", _fail)
    with pytest.raises(IntegrityError):
        case_create(image_file=png_bytes(synthetic_slice()[0]), filename="a.png", user=owner)
    assert _media_files() == set() and not Scan.objects.exists()


def test_an_api_upload_whose_runs_fail_after_the_case_leaves_no_file(monkeypatch):
    """case_create commits its savepoint; the API's outer block rolls back and takes the files with it."""
    clinician = with_roles(UserFactory(username="uploader"), "clinician")
    api = APIClient()
    api.force_authenticate(clinician)
    monkeypatch.setattr("clinic.uploads.segmentation_runs_create_for_case", _fail)
    response = api.post("/api/cases/", {"image": ContentFile(png_bytes(synthetic_slice()[0]), name="a.png")})
    assert response.status_code == 500  # the API's problem handler answers the unexpected error
    assert _media_files() == set() and not Case.objects.exists()


def test_an_upload_that_commits_keeps_its_file(owner):
    case = case_create(image_file=png_bytes(synthetic_slice()[0]), filename="a.png", user=owner)
    assert _media_files() == {case.scan.file.name}


# === A mask correction ===


def _corrected(case) -> np.ndarray:
    mask = np.zeros((case.scan.height, case.scan.width), bool)
    mask[10:30, 10:30] = True
    return mask


def test_a_correction_whose_audit_entry_fails_leaves_no_new_file(owner, monkeypatch):
    case = make_case(user=owner, ground_truth=True, size=64)
    before = _media_files()
    monkeypatch.setattr("cases.review.audit_record", _fail)
    with pytest.raises(IntegrityError):
        case_mask_correct(case=case, mask=_corrected(case), user=owner)
    assert _media_files() == before and MaskVersion.objects.filter(case=case).count() == 1


def test_a_correction_that_commits_adds_one_file(owner):
    case = make_case(user=owner, ground_truth=True, size=64)
    before = _media_files()
    case_mask_correct(case=case, mask=_corrected(case), user=owner)
    case.refresh_from_db()
    assert _media_files() - before == {case.mask_version.file.name}


# === A segmentation result ===


@pytest.fixture
def running_run(owner):
    case = make_case(user=owner, size=64)
    version = ModelVersion.objects.create(name="tiny_unet", architecture="unet", is_active=False)
    return SegmentationRun.objects.select_related("case__scan", "model_version").get(
        pk=SegmentationRun.objects.create(case=case, model_version=version, status=RunStatus.RUNNING).pk
    )


def _result(run):
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    run_services._store_result(run, mask, mask.astype(np.float32), 5.0)


def test_a_result_whose_update_fails_leaves_no_file(running_run, monkeypatch):
    before = _media_files()
    monkeypatch.setattr(QuerySet, "update", _fail)
    with pytest.raises(IntegrityError):
        _result(running_run)
    monkeypatch.undo()
    assert _media_files() == before
    assert SegmentationRun.objects.get(pk=running_run.pk).status == RunStatus.RUNNING


def test_a_result_for_a_run_finished_elsewhere_leaves_no_file(running_run):
    SegmentationRun.objects.filter(pk=running_run.pk).update(status=RunStatus.FAILED)
    before = _media_files()
    _result(running_run)
    assert _media_files() == before
    assert not SegmentationRun.objects.get(pk=running_run.pk).mask_file


def test_a_result_that_commits_keeps_both_files(running_run):
    before = _media_files()
    _result(running_run)
    run = SegmentationRun.objects.get(pk=running_run.pk)
    assert run.status == RunStatus.DONE
    assert _media_files() - before == {run.mask_file.name, run.probability_file.name}
