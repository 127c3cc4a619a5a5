import pytest
from rest_framework.test import APIClient

from recommender.models import CaseFeatures, MaskKind
from segmentation import services
from segmentation.models import SegmentationRun
from segmentation.tasks import run_segmentation_task
from segmentation.testing import make_case

pytestmark = pytest.mark.django_db


def test_a_validated_ai_mask_brings_a_typed_case_into_the_case_base(
    models_dir, media_dir, clinician, django_capture_on_commit_callbacks, queued_tasks_inline
):
    services.model_versions_sync()
    case = make_case(user=clinician, tumour_type="glioma", size=80)  # the clinician's type
    runs = {r.model_version.name: r for r in services.segmentation_runs_create_for_case(case=case)}
    api = APIClient()
    api.force_authenticate(clinician)
    early = api.post(f"/api/segmentations/{runs['ensemble'].pk}/review/", {"validated": True}, format="json")
    assert early.status_code == 409 and "finished" in early.json()["detail"]

    with django_capture_on_commit_callbacks(execute=True):  # the primary run's follow-up, once committed
        for name in ("tiny_unet", "tiny_attention_unet", "ensemble"):
            run_segmentation_task.apply(args=[runs[name].pk])
    features = CaseFeatures.objects.get(case=case)
    assert features.mask_kind == MaskKind.PRIMARY and not features.in_base

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/segmentations/{runs['ensemble'].pk}/review/", {"validated": True}, format="json"
        )
    assert response.status_code == 200 and response.json()["review_status"] == "validated"
    run = SegmentationRun.objects.get(pk=runs["ensemble"].pk)
    assert run.reviewed_by == clinician and run.reviewed_at is not None
    features.refresh_from_db()
    assert features.mask_kind == MaskKind.VALIDATED and features.in_base and features.tumour_type == "glioma"
