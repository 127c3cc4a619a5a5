"""A rejected AI mask is never the case's outline: not in its pictures, not on the correction page's
canvas, and the case says it needs a clinician's outline; the case list can show only those cases.

``segmented_case``'s primary model is the ensemble (the active one); ``unet_a`` is another model.
"""

import io

import numpy as np
import pytest
from PIL import Image

from cases.review import case_mask_correct
from clinic.browse import case_best_mask, mask_state
from segmentation.testing import make_case, synthetic_slice
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


def _runs(case):
    return [case.segmentation_runs.get(model_version__name=n) for n in ("unet_a", "ensemble")]


def _reject(client, run):
    response = client.post(f"/runs/{run.pk}/review/", {"decision": "reject"})
    assert response.status_code == 302


def _red(response) -> bool:
    """Whether a picture has a red outline (the slice itself is grey)."""
    assert response.status_code == 200
    picture = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    return bool((picture[:, :, 0] > picture[:, :, 2] + 100).any())


def _list_ids(client, status):
    return [row["case"].pk for row in client.get(f"/?status={status}").context["rows"]]


def test_a_rejected_primary_mask_is_no_longer_the_cases_outline(owner_client, segmented_case):
    case = segmented_case
    assert _red(owner_client.get(f"/cases/{case.pk}/thumbnail.png"))
    _, ensemble = _runs(case)
    _reject(owner_client, ensemble)

    state = owner_client.get(f"/cases/{case.pk}/state.json").json()
    assert state["mask_state"] == {
        "code": "rejected",
        "label": "AI mask rejected · needs a clinician's outline",
    }
    assert case_best_mask(case) is None
    assert not _red(owner_client.get(f"/cases/{case.pk}/thumbnail.png"))
    assert not _red(owner_client.get(f"/cases/{case.pk}/overlay.png"))
    assert owner_client.get(f"/cases/{case.pk}/best-mask.png").status_code == 404
    correct = owner_client.get(f"/cases/{case.pk}/correct/").content.decode()
    assert "data-mask-url" not in correct and "No mask yet: paint the tumour." in correct
    # The rejected mask itself stays viewable on request, for the reviewer.
    assert _red(owner_client.get(f"/cases/{case.pk}/overlay.png?run={ensemble.pk}"))


def test_rejecting_another_models_mask_keeps_the_primary_outline(owner_client, segmented_case):
    unet, _ = _runs(segmented_case)
    _reject(owner_client, unet)
    assert mask_state(segmented_case, segmented_case.segmentation_runs.all()).code == "pending"
    assert case_best_mask(segmented_case) is not None
    assert owner_client.get(f"/cases/{segmented_case.pk}/best-mask.png").status_code == 200


def test_a_validated_mask_of_another_model_outlines_a_case_whose_primary_was_rejected(
    owner_client, segmented_case
):
    unet, ensemble = _runs(segmented_case)
    _reject(owner_client, ensemble)
    owner_client.post(f"/runs/{unet.pk}/review/", {"decision": "validate"})
    assert mask_state(segmented_case, segmented_case.segmentation_runs.all()).code == "validated"
    assert case_best_mask(segmented_case) is not None
    assert segmented_case.pk not in _list_ids(owner_client, "rejected")


def test_the_case_list_filters_the_cases_whose_ai_mask_was_rejected(owner_client, segmented_case):
    rejected = segmented_case
    pending = make_case(patient="WEB-PENDING", seed=4)
    _, lesion = synthetic_slice(96, center=(48, 48), radius=10, seed=4)
    add_finished_run(pending, "ensemble", lesion, ensemble=True)
    make_case(patient="WEB-IMPORTED", seed=5, tumour_type="glioma", ground_truth=True)
    _reject(owner_client, _runs(rejected)[1])

    html = owner_client.get("/?status=rejected").content.decode()
    assert '<option value="rejected" selected>Rejected</option>' in html
    assert "AI mask rejected · needs a clinician&#x27;s outline" in html
    assert _list_ids(owner_client, "rejected") == [rejected.pk]
    assert _list_ids(owner_client, "review") == [pending.pk]


def test_a_clinicians_outline_ends_the_rejected_state(owner_client, owner, segmented_case):
    _reject(owner_client, _runs(segmented_case)[1])
    drawn = np.zeros((96, 96), bool)
    drawn[40:60, 40:60] = True
    case_mask_correct(case=segmented_case, mask=drawn, user=owner)
    state = owner_client.get(f"/cases/{segmented_case.pk}/state.json").json()
    assert state["mask_state"]["code"] == "corrected"
    assert _list_ids(owner_client, "rejected") == []
    assert _red(owner_client.get(f"/cases/{segmented_case.pk}/thumbnail.png"))
