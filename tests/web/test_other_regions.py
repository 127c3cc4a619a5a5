"""The correction page offers the regions the models saw but left out of their mask: where a missed tumour
is in the map at all, it is mostly such a region, ranked below a brighter look-alike (docs/training.md)."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from segmentation.testing import make_case
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


def _case_with_a_runner_up(owner):
    """A 96-px case whose primary (ensemble) mask holds the brighter region; a second, fainter one above
    the threshold (0.5) was left out, and a third stays below it."""
    case = make_case(user=owner, patient="REGIONS", seed=4)
    prob = np.zeros((96, 96), np.float32)
    prob[10:30, 10:30] = 0.9  # the outline the models chose
    prob[60:70, 50:66] = 0.62  # the runner-up: 160 px
    prob[80:90, 5:15] = 0.3  # below the threshold
    served = prob >= 0.9
    return case, add_finished_run(case, "ensemble", served, ensemble=True, probability=prob)


def _png_mask(response) -> np.ndarray:
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L")) > 127


def test_the_correction_page_offers_the_region_the_models_left_out(owner_client, owner, media_dir):
    case, _ = _case_with_a_runner_up(owner)
    response = owner_client.get(f"/cases/{case.pk}/correct/")
    regions = response.context["other_regions"]
    assert [(r["rank"], r["peak_percent"], r["area"]["area_px"]) for r in regions] == [(1, 62, 160)]
    page = response.content.decode()
    assert "Other regions the models saw" in page
    # The page carries the region's picture; the picture's own address serves the same mask.
    embedded = regions[0]["picture"].removeprefix("data:image/png;base64,")
    assert f'data-region-url="{regions[0]["picture"]}"' in page
    in_page = np.asarray(Image.open(io.BytesIO(base64.b64decode(embedded))).convert("L")) > 127
    region = _png_mask(owner_client.get(f"/cases/{case.pk}/other-regions/1.png"))
    assert region.sum() == 160 and region[65, 55] and not region[20, 20]
    assert np.array_equal(in_page, region)
    assert owner_client.get(f"/cases/{case.pk}/other-regions/2.png").status_code == 404
    assert owner_client.get(f"/cases/{case.pk}/other-regions/0.png").status_code == 404


def test_a_rejected_outline_still_offers_the_other_regions(owner_client, owner, media_dir):
    case, run = _case_with_a_runner_up(owner)
    assert owner_client.post(f"/runs/{run.pk}/review/", {"decision": "reject"}).status_code == 302
    page = owner_client.get(f"/cases/{case.pk}/correct/").content.decode()
    assert "No mask yet: paint the tumour." in page  # the rejected outline is not the start
    assert "the models outlined another region" in page and "Start from region 1" in page


def test_no_region_is_offered_without_a_map_or_another_region(owner_client, owner, media_dir):
    case = make_case(user=owner, patient="NO-MAP", seed=5)
    lesion = np.zeros((96, 96), bool)
    lesion[40:50, 40:50] = True
    add_finished_run(case, "ensemble", lesion, ensemble=True)  # no probability map stored
    response = owner_client.get(f"/cases/{case.pk}/correct/")
    assert response.context["other_regions"] == []
    assert "Other regions the models saw" not in response.content.decode()
    assert owner_client.get(f"/cases/{case.pk}/other-regions/1.png").status_code == 404

    only = make_case(user=owner, patient="ONE-REGION", seed=6)
    add_finished_run(only, "ensemble", lesion, ensemble=True, probability=lesion * 0.9)
    assert owner_client.get(f"/cases/{only.pk}/correct/").context["other_regions"] == []


def test_a_signed_out_visitor_gets_no_region(client, owner, media_dir):
    case, _ = _case_with_a_runner_up(owner)
    response = client.get(f"/cases/{case.pk}/other-regions/1.png")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_when_the_models_outline_nothing_the_page_offers_where_their_map_was_highest(
    owner_client, owner, media_dir
):
    case = make_case(user=owner, patient="NOTHING-OUTLINED", seed=7)
    prob = np.zeros((96, 96), np.float32)
    prob[50:60, 30:42] = 0.2  # under the threshold (0.5): the mask is empty
    prob[54, 36] = 0.3
    prob[10:20, 70:80] = 0.08  # a fainter place, under half the peak
    add_finished_run(case, "ensemble", np.zeros((96, 96), bool), ensemble=True, probability=prob)
    response = owner_client.get(f"/cases/{case.pk}/correct/")
    [region] = response.context["other_regions"]
    assert region["likeliest"] and region["peak_percent"] == 30 and region["area"]["area_px"] == 120
    page = " ".join(response.content.decode().split())
    assert "Where the models' map was highest" in page and "Very low confidence:" in page
    assert "Other regions the models saw" not in page
    picture = _png_mask(owner_client.get(f"/cases/{case.pk}/other-regions/1.png"))
    assert picture.sum() == 120 and picture[55, 35] and not picture[15, 75]


def test_the_likeliest_region_is_not_offered_beside_an_outline_or_a_region_left_out(
    owner_client, owner, media_dir
):
    case, _ = _case_with_a_runner_up(owner)  # a mask, and a region above the threshold left out
    assert not any(
        r["likeliest"] for r in owner_client.get(f"/cases/{case.pk}/correct/").context["other_regions"]
    )
    outlined = make_case(user=owner, patient="OUTLINED-ONLY", seed=8)
    lesion = np.zeros((96, 96), bool)
    lesion[40:50, 40:50] = True
    prob = lesion * 0.9 + 0.2 * (~lesion)  # everything else under the threshold
    add_finished_run(outlined, "ensemble", lesion, ensemble=True, probability=prob)
    assert owner_client.get(f"/cases/{outlined.pk}/correct/").context["other_regions"] == []
