"""GET /api/cases/{id}/other-regions/ and its PNGs: the regions of the primary run's map that its mask left
out, as the correction page offers them, for an API client (a PACS viewer, say)."""

import io

import numpy as np
import pytest
from PIL import Image

from audit.models import AuditEntry
from segmentation.testing import make_case
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(clinician, media_dir):
    case = make_case(user=clinician, patient="API-REGIONS", seed=9)
    prob = np.zeros((96, 96), np.float32)
    prob[10:30, 10:30] = 0.9  # the mask
    prob[60:70, 50:66] = 0.62  # left out: 160 px
    prob[75:80, 5:9] = 0.7  # left out: 20 px, a higher peak
    add_finished_run(case, "ensemble", prob >= 0.9, ensemble=True, probability=prob)
    return case


def test_the_other_regions_are_listed_highest_probability_first_with_their_pictures(api, case):
    body = api.get(f"/api/cases/{case.pk}/other-regions/").json()
    assert [(r["rank"], r["peak"], r["area_px"]) for r in body] == [
        (1, pytest.approx(0.7, abs=0.005), 20),
        (2, pytest.approx(0.62, abs=0.005), 160),
    ]
    assert all(r["area_mm2"] is None or r["area_mm2"] > 0 for r in body)
    picture = api.get(body[1]["png_url"])
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    region = np.asarray(Image.open(io.BytesIO(picture.content)).convert("L")) > 127
    assert region.shape == (96, 96) and region.sum() == 160 and region[65, 55]
    assert api.get(f"/api/cases/{case.pk}/other-regions/3.png").status_code == 404


def test_a_region_download_is_audited_and_the_list_is_not(api, case, clinician):
    api.get(f"/api/cases/{case.pk}/other-regions/")
    assert not AuditEntry.objects.filter(event="mask.downloaded").exists()
    api.get(f"/api/cases/{case.pk}/other-regions/1.png")
    [entry] = AuditEntry.objects.filter(event="mask.downloaded")
    assert entry.actor == clinician and entry.object_pk == str(case.pk)


def test_an_empty_outline_lists_where_the_map_was_highest_marked_as_such(api, clinician, media_dir):
    case = make_case(user=clinician, patient="API-NOTHING", seed=10)
    prob = np.zeros((96, 96), np.float32)
    prob[20:28, 20:30] = 0.12  # nothing reaches the threshold
    add_finished_run(case, "ensemble", np.zeros((96, 96), bool), ensemble=True, probability=prob)
    [row] = api.get(f"/api/cases/{case.pk}/other-regions/").json()
    assert row["likeliest"] is True and row["rank"] == 1 and row["area_px"] == 80
    assert row["peak"] == pytest.approx(0.12, abs=0.005)


def test_regions_left_out_are_not_marked_likeliest(api, case):
    assert [r["likeliest"] for r in api.get(f"/api/cases/{case.pk}/other-regions/").json()] == [False, False]
