"""Every route under /api/ answers what the OpenAPI schema that drf-spectacular generates says.

The routes come from the URLconf, so a new endpoint without exchanges here fails. Each exchange is a
real request (a success and the errors: 400, 401/403, 404, 409, 413, 415, 500 where they apply); openapi-core
checks each real response against the schema: the status code is declared for the operation, the content
type is declared, the body is valid, with every object of the schema closed (an undeclared key fails), and
every array of a successful answer has items in at least one exchange (so its items were checked against
something). Routes outside the schema (the schema itself, Swagger UI, unknown
addresses) and methods no operation has (405) are checked against the Problem schema alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_core import Config, OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_core.deserializing.media_types.util import json_loads
from openapi_schema_validator import OAS31Validator
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

import clinic.api.cases
from cases.review import case_mask_correct
from cases.services import case_create
from clinic.api.errors import PROBLEM_CONTENT_TYPE
from recommender.services import case_base_build, diagnosis_record
from segmentation.models import ModelVersion, RunStatus, SegmentationRun
from segmentation.testing import make_case, make_case_base, png_bytes, synthetic_slice

pytestmark = pytest.mark.django_db

API_NAMESPACE = "api"
# Answered by drf-spectacular's own views or by the catch-all: not operations of the schema.
OUTSIDE_THE_SCHEMA = {"schema", "docs", "no-endpoint"}


@dataclass
class Exchange:
    """One request and the status it must get. ``url`` is formatted with the world's ids."""

    method: str
    url: str
    status: int
    who: str = "owner"  # owner, anonymous or bad-token
    data: Any = None
    format: str | None = "json"
    content_type: str | None = None
    settings: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)  # request headers, e.g. {"If-Match": '"1"'}
    fails_with: Exception | None = None  # raised inside the view: the 500 path


_CREDENTIALS = {"username": "dr_owner", "password": "pw-owner-123"}


def _mask_upload(size: int = 64) -> SimpleUploadedFile:
    _, lesion = synthetic_slice(size, center=(20, 20), radius=5, seed=3)
    return SimpleUploadedFile("mask.png", png_bytes(lesion.astype("uint8") * 255), content_type="image/png")


def _png_upload() -> SimpleUploadedFile:
    image, _ = synthetic_slice(64, center=(30, 30), radius=6, seed=3)
    return SimpleUploadedFile("slice.png", png_bytes(image), content_type="image/png")


EXCHANGES: dict[str, list[Exchange]] = {
    "auth-token": [
        Exchange("post", "/api/auth/token/", 200, who="anonymous", data=lambda: _CREDENTIALS),
        Exchange(
            "post", "/api/auth/token/", 400, who="anonymous", data={"username": "dr_owner", "password": "x"}
        ),
        Exchange("post", "/api/auth/token/", 415, who="anonymous", data="u=p", content_type="text/plain"),
        Exchange(
            "post",
            "/api/auth/token/",
            429,
            who="anonymous",
            data=lambda: _CREDENTIALS,
            settings={"TUMORSITE_TOKEN_RATE": "0/minute"},
        ),
    ],
    "case-list": [
        Exchange("get", "/api/cases/", 200),
        Exchange("get", "/api/cases/?page_size=2&page=2", 200),
        Exchange("get", "/api/cases/?tumour_type=unknown", 400),
        Exchange("get", "/api/cases/?page=999", 404),
        Exchange("get", "/api/cases/", 403, who="anonymous"),
        Exchange("get", "/api/cases/", 403, who="bad-token"),
        Exchange(
            "post",
            "/api/cases/",
            201,
            data=lambda: {"image": _png_upload(), "patient": "UPLOAD-1"},
            format="multipart",
        ),
        # The same file again: a 409 naming the case that has it (duplicate_of), unless forced.
        Exchange("post", "/api/cases/", 409, data=lambda: {"image": _png_upload()}, format="multipart"),
        Exchange(
            "post",
            "/api/cases/",
            201,
            data=lambda: {"image": _png_upload(), "force": "true"},
            format="multipart",
        ),
        Exchange(
            "post",
            "/api/cases/",
            400,
            data=lambda: {"image": SimpleUploadedFile("scan.png", b"not an image")},
            format="multipart",
        ),
        Exchange("post", "/api/cases/", 400, data={}, format="multipart"),
        Exchange(
            "post",
            "/api/cases/",
            413,
            data=lambda: {"image": _png_upload()},
            format="multipart",
            settings={"TUMORSITE_MAX_UPLOAD_MB": 0},
        ),
        Exchange("post", "/api/cases/", 415, data={"patient": "X"}),
        Exchange("post", "/api/cases/", 403, who="anonymous", data={}, format="multipart"),
        Exchange("delete", "/api/cases/", 405),
        # Throttled before the body is read: the upload is refused whatever it holds.
        Exchange(
            "post", "/api/cases/", 429, data={}, format="multipart", settings={"TUMORSITE_UPLOAD_RATE": "0/h"}
        ),
    ],
    "case-detail": [
        Exchange("get", "/api/cases/{pending}/", 200),
        Exchange("get", "/api/cases/{ready}/", 200),
        Exchange("get", "/api/cases/999999/", 404),
        Exchange("get", "/api/cases/{pending}/", 403, who="anonymous"),
        Exchange("get", "/api/cases/{pending}/", 500, fails_with=RuntimeError("a bug")),
        Exchange("patch", "/api/cases/{ready}/", 200, data={"tumour_type": "glioma"}),
        Exchange(
            "patch", "/api/cases/{pending}/", 200, data={"tumour_type": "glioma"}, headers={"If-Match": "*"}
        ),
        Exchange("patch", "/api/cases/{pending}/", 400, data={"tumour_type": "unknown"}),
        Exchange(
            "patch", "/api/cases/{pending}/", 400, data={"tumour_type": "glioma"}, headers={"If-Match": "3"}
        ),
        Exchange("patch", "/api/cases/999999/", 404, data={"tumour_type": "glioma"}),
        Exchange(
            "patch",
            "/api/cases/{pending}/",
            409,
            data={"tumour_type": "glioma"},
            headers={"If-Match": '"999"'},
        ),
        Exchange("patch", "/api/cases/{pending}/", 415, data="tumour_type=glioma", content_type="text/plain"),
        Exchange("patch", "/api/cases/{pending}/", 403, who="anonymous", data={"tumour_type": "glioma"}),
    ],
    "case-thumbnail": [
        Exchange("get", "/api/cases/{pending}/thumbnail.png", 200),
        Exchange("get", "/api/cases/999999/thumbnail.png", 404),
        Exchange("get", "/api/cases/{pending}/thumbnail.png", 403, who="anonymous"),
    ],
    "case-similar": [
        Exchange("get", "/api/cases/{ready}/similar/", 200),
        Exchange("get", "/api/cases/{ready}/similar/?page_size=2&tumour_type=glioma", 200),
        Exchange("get", "/api/cases/{pending}/similar/", 200),
        Exchange("get", "/api/cases/{ready}/similar/?tumour_type=unknown", 400),
        Exchange("get", "/api/cases/{ready}/similar/?page=99", 404),
        Exchange("get", "/api/cases/999999/similar/", 404),
        Exchange("get", "/api/cases/{ready}/similar/", 403, who="anonymous"),
    ],
    "case-masks": [
        Exchange("get", "/api/cases/{corrected}/masks/", 200),
        Exchange("get", "/api/cases/{pending}/masks/", 200),
        Exchange("get", "/api/cases/{corrected}/masks/?page=9", 404),
        Exchange("get", "/api/cases/{corrected}/masks/?page=0", 400),
        Exchange("get", "/api/cases/999999/masks/", 404),
        Exchange("get", "/api/cases/{corrected}/masks/", 403, who="anonymous"),
        Exchange(
            "post",
            "/api/cases/{ready}/masks/",
            201,
            data=lambda: {"mask": _mask_upload()},
            format="multipart",
        ),
        Exchange(
            "post",
            "/api/cases/{ready}/masks/",
            400,
            data=lambda: {"mask": _mask_upload(size=32)},
            format="multipart",
        ),
        Exchange("post", "/api/cases/{ready}/masks/", 400, data={}, format="multipart"),
        Exchange(
            "post", "/api/cases/999999/masks/", 404, data=lambda: {"mask": _mask_upload()}, format="multipart"
        ),
        Exchange(
            "post",
            "/api/cases/{ready}/masks/",
            409,
            data=lambda: {"mask": _mask_upload()},
            format="multipart",
            headers={"If-Match": '"999"'},
        ),
        Exchange("post", "/api/cases/{ready}/masks/", 415, data={"mask": "x"}),
        Exchange("post", "/api/cases/{ready}/masks/", 403, who="anonymous", data={}, format="multipart"),
    ],
    "case-other-regions": [
        Exchange("get", "/api/cases/{regions}/other-regions/", 200),
        Exchange("get", "/api/cases/{pending}/other-regions/", 200),  # none
        Exchange("get", "/api/cases/999999/other-regions/", 404),
        Exchange("get", "/api/cases/{regions}/other-regions/", 403, who="anonymous"),
    ],
    "case-other-region": [
        Exchange("get", "/api/cases/{regions}/other-regions/1.png", 200),
        Exchange("get", "/api/cases/{regions}/other-regions/2.png", 404),
        Exchange("get", "/api/cases/{regions}/other-regions/1.png", 403, who="anonymous"),
    ],
    "case-mask-version": [
        Exchange("get", "/api/cases/{corrected}/masks/1.png", 200),
        Exchange("get", "/api/cases/{corrected}/masks/2.png", 200),
        Exchange("get", "/api/cases/{corrected}/masks/9.png", 404),
        Exchange("get", "/api/cases/{corrected}/masks/1.png", 403, who="anonymous"),
    ],
    # The DICOM Segmentations: of a DICOM case only; any other case gets a 404 problem saying why.
    "case-mask-version-dicom": [
        Exchange("get", "/api/cases/{dicom}/masks/1.dcm", 200),
        Exchange("get", "/api/cases/{corrected}/masks/1.dcm", 404),
        Exchange("get", "/api/cases/{dicom}/masks/9.dcm", 404),
        Exchange("get", "/api/cases/{dicom}/masks/1.dcm", 403, who="anonymous"),
    ],
    "case-mask-dicom": [
        Exchange("get", "/api/cases/{dicom}/mask.dcm", 200),
        Exchange("get", "/api/cases/{corrected}/mask.dcm", 404),
        Exchange("get", "/api/cases/{pending}/mask.dcm", 404),
        Exchange("get", "/api/cases/{dicom}/mask.dcm", 403, who="anonymous"),
    ],
    "case-mask-restore": [
        Exchange("post", "/api/cases/{corrected}/masks/1/restore/", 201),
        Exchange("post", "/api/cases/{corrected}/masks/3/restore/", 409),  # the restore just above: in use
        Exchange("post", "/api/cases/{corrected}/masks/2/restore/", 409, headers={"If-Match": '"1"'}),
        Exchange("post", "/api/cases/{corrected}/masks/9/restore/", 404),
        Exchange("post", "/api/cases/{corrected}/masks/1/restore/", 400, headers={"If-Match": "1"}),
        Exchange("post", "/api/cases/{corrected}/masks/1/restore/", 403, who="anonymous"),
    ],
    "case-diagnoses": [
        Exchange("post", "/api/cases/{pending}/diagnoses/", 201, data={"name": "Pituitary adenoma"}),
        Exchange("post", "/api/cases/{ready}/diagnoses/", 200, data={"name": "Pituitary adenoma"}),
        Exchange("post", "/api/cases/{pending}/diagnoses/", 400, data={}),
        Exchange("post", "/api/cases/999999/diagnoses/", 404, data={"name": "Glioma"}),
        Exchange(
            "post", "/api/cases/{pending}/diagnoses/", 409, data={"name": "x"}, headers={"If-Match": '"999"'}
        ),
        Exchange("post", "/api/cases/{pending}/diagnoses/", 415, data="name=x", content_type="text/plain"),
        Exchange("post", "/api/cases/{pending}/diagnoses/", 403, who="anonymous", data={"name": "x"}),
    ],
    "case-diagnosis": [
        Exchange("delete", "/api/cases/{ready}/diagnoses/{diagnosis}/", 409, headers={"If-Match": '"999"'}),
        Exchange("delete", "/api/cases/{ready}/diagnoses/{diagnosis}/", 400, headers={"If-Match": 'W/"1"'}),
        Exchange("delete", "/api/cases/{ready}/diagnoses/{diagnosis}/", 204),
        Exchange("delete", "/api/cases/{ready}/diagnoses/{diagnosis}/", 404),  # removed just above
        Exchange("delete", "/api/cases/999999/diagnoses/{diagnosis}/", 404),
        Exchange("delete", "/api/cases/{ready}/diagnoses/{diagnosis}/", 403, who="anonymous"),
    ],
    "segmentation-review": [
        Exchange("post", "/api/segmentations/{done_run}/review/", 200, data={"validated": False}),
        Exchange(
            "post",
            "/api/segmentations/{done_run}/review/",
            200,
            data={"validated": False, "reason": "Misses the rim"},
        ),
        Exchange(
            "post",
            "/api/segmentations/{done_run}/review/",
            400,
            data={"validated": False, "reason": "x" * 1001},
        ),
        Exchange("post", "/api/segmentations/{queued_run}/review/", 409, data={"validated": True}),
        Exchange("post", "/api/segmentations/{done_run}/review/", 400, data={"validated": "maybe"}),
        Exchange("post", "/api/segmentations/999999/review/", 404, data={"validated": True}),
        Exchange("post", "/api/segmentations/{done_run}/review/", 415, data="x", content_type="text/plain"),
        Exchange("post", "/api/segmentations/{done_run}/review/", 403, who="anonymous", data={}),
    ],
    "segmentation-file": [
        Exchange("get", "/api/segmentations/{done_run}/mask.png", 200),
        Exchange("get", "/api/segmentations/{done_run}/probability.png", 200),
        Exchange("get", "/api/segmentations/{queued_run}/mask.png", 404),
        Exchange("get", "/api/segmentations/999999/mask.png", 404),
        Exchange("get", "/api/segmentations/{done_run}/mask.png", 403, who="anonymous"),
    ],
    "segmentation-dicom": [
        Exchange("get", "/api/segmentations/{dicom_run}/mask.dcm", 200),
        Exchange("get", "/api/segmentations/{done_run}/mask.dcm", 404),
        Exchange("get", "/api/segmentations/{queued_run}/mask.dcm", 404),
        Exchange("get", "/api/segmentations/{dicom_run}/mask.dcm", 403, who="anonymous"),
    ],
    "diagnosis-list": [
        Exchange("get", "/api/diagnoses/?q=pit", 200),
        Exchange("get", "/api/diagnoses/", 200),
        Exchange("get", "/api/diagnoses/?q=a%00b", 400),
        Exchange("get", "/api/diagnoses/?page=9", 404),
        Exchange("get", "/api/diagnoses/", 403, who="anonymous"),
    ],
    "schema": [
        Exchange("get", "/api/schema/", 200),
        Exchange("get", "/api/schema/", 403, who="anonymous"),
    ],
    "docs": [
        Exchange("get", "/api/docs/", 200),
        Exchange("get", "/api/docs/", 403, who="anonymous"),
    ],
    "no-endpoint": [
        Exchange("get", "/api/no/such/thing/", 404),
        Exchange("post", "/api/segmentations/1/weights.png", 404, data={}),
        Exchange("get", "/api/no/such/thing/", 403, who="anonymous"),
    ],
}


def _api_routes() -> list[str]:
    """The names of every route under /api/, read from the URLconf (not from this file)."""
    for resolver in get_resolver().url_patterns:
        if getattr(resolver, "namespace", None) == API_NAMESPACE:
            assert str(resolver.pattern) == "api/"
            nested = [p for p in resolver.url_patterns if isinstance(p, URLResolver)]
            assert not nested, f"nested includes under /api/ are not walked by this test yet: {nested}"
            return [p.name for p in resolver.url_patterns if isinstance(p, URLPattern)]
    raise AssertionError("no URLconf include with the 'api' namespace")


def _done_run(case, version, mask, probability=None) -> SegmentationRun:
    """A finished run with its mask PNG and, given one, its probability map (uint8)."""
    files = {"mask_file": ContentFile(png_bytes(mask.astype("uint8") * 255), name="mask.png")}
    if probability is not None:
        files["probability_file"] = ContentFile(png_bytes(probability), name="probability.png")
    return SegmentationRun.objects.create(
        case=case, model_version=version, status=RunStatus.DONE, area_px=int(mask.sum()), **files
    )


@pytest.fixture
def world(clinician, media_dir, settings, tmp_path):
    """Described base cases (so the similar-case search is ready), one with a diagnosis, a new case that
    is not described yet, and two runs on it: a finished one with its PNGs and a queued one."""
    settings.TUMORSITE_MODELS_DIR = tmp_path  # no models: an upload is recorded and nothing runs
    base = make_case_base(n_per_type=2, user=clinician, size=64)
    case_base_build(use_embedding=False)
    # Recorded diagnoses, so the case's, the similar cases' and the catalogue's lists have items to check.
    for case in base:
        diagnosis, _, _ = diagnosis_record(case=case, name="Pituitary macroadenoma", user=clinician)
    pending = make_case(user=clinician, patient="NEW", seed=7, size=64)
    image, mask = synthetic_slice(64, center=(30, 30), radius=6, seed=7)
    version = ModelVersion.objects.create(name="unet_test", architecture="unet", is_active=False)
    done = _done_run(pending, version, mask, image)
    other = ModelVersion.objects.create(name="unet_other", architecture="unet", is_active=False)
    queued = SegmentationRun.objects.create(case=pending, model_version=other)
    # An imported expert mask (version 1) and a clinician's correction of it (version 2, in use).
    corrected = base[1]
    case_mask_correct(case=corrected, mask=np.roll(mask, 3, axis=1), user=clinician)
    # A DICOM case (pydicom's MR_small, 64 x 64) with a clinician's outline and a finished run.
    dicom = case_create(image_file=Path(get_testdata_file("MR_small.dcm")).read_bytes(), user=clinician)
    case_mask_correct(case=dicom, mask=mask, user=clinician)
    dicom_run = _done_run(dicom, version, mask)
    # A case whose primary (ensemble) mask left a second region of its map out: the other regions.
    regions = make_case(user=clinician, patient="REGIONS", seed=8, size=64)
    chosen, left_out = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    chosen[5:15, 5:15], left_out[40:50, 40:50] = True, True
    probability = (chosen * 230 + left_out * 160).astype(np.uint8)
    ensemble = ModelVersion.objects.create(
        name="ensemble", architecture="ensemble", is_active=True, is_ensemble=True
    )
    _done_run(regions, ensemble, chosen, probability)
    return {
        "regions": regions.pk,
        "ready": base[0].pk,
        "pending": pending.pk,
        "done_run": done.pk,
        "queued_run": queued.pk,
        "diagnosis": diagnosis.pk,
        "corrected": corrected.pk,
        "dicom": dicom.pk,
        "dicom_run": dicom_run.pk,
    }


@pytest.fixture
def schema(clinician) -> dict:
    client = APIClient()
    client.force_authenticate(clinician)
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def _closed(schema: dict) -> dict:
    """The schema with every object component closed (``additionalProperties: false``) unless it says
    otherwise, so a key that a response has and the schema does not declare fails too."""
    closed = json.loads(json.dumps(schema))
    for component in closed["components"]["schemas"].values():
        if component.get("type") == "object" and "properties" in component:
            component.setdefault("additionalProperties", False)
    return closed


def _openapi(schema: dict) -> OpenAPI:
    # openapi-core reads application/json itself; problem+json is JSON too (RFC 9457).
    return OpenAPI.from_dict(
        _closed(schema), config=Config(extra_media_type_deserializers={PROBLEM_CONTENT_TYPE: json_loads})
    )


def _arrays(body: Any, path: str = "") -> dict[str, bool]:
    """Each array in a JSON body by its path (``results[].why``) and whether it had an item."""
    found: dict[str, bool] = {}
    if isinstance(body, dict):
        for key, value in body.items():
            for sub, filled in _arrays(value, f"{path}.{key}" if path else key).items():
                found[sub] = found.get(sub, False) or filled
    elif isinstance(body, list):
        found[path] = bool(body)
        for item in body:
            for sub, filled in _arrays(item, f"{path}[]").items():
                found[sub] = found.get(sub, False) or filled
    return found


class _Request(DjangoOpenAPIRequest):
    """The request as openapi-core sees it to check a response: found by its path among the schema's
    templates (the contrib's route-to-template translation does not read re_path routes, e.g. the run
    files), and without its body (a multipart body is consumed once read by the view)."""

    @property
    def path_pattern(self) -> None:
        return None

    @property
    def body(self) -> bytes:
        return b""


def _template(schema: dict, path: str) -> str | None:
    """The schema path (``/api/cases/{case_id}/``) that a concrete path falls under."""
    for template in schema["paths"]:
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            return template
    return None


def _client(who: str, user) -> APIClient:
    client = APIClient()
    if who == "owner":
        client.force_authenticate(user)
    elif who == "bad-token":
        client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    return client


def _send(exchange: Exchange, world: dict, user, settings, monkeypatch):
    for name, value in exchange.settings.items():
        setattr(settings, name, value)
    if exchange.fails_with is not None:
        monkeypatch.setattr(clinic.api.cases, "case_get", _raiser(exchange.fails_with))
    data = exchange.data() if callable(exchange.data) else exchange.data
    kwargs: dict[str, Any] = {}
    if exchange.content_type:
        kwargs["content_type"] = exchange.content_type
    elif exchange.format and data is not None:
        kwargs["format"] = exchange.format
    url = exchange.url.format(**world)
    if exchange.headers:
        kwargs["headers"] = exchange.headers
    response = getattr(_client(exchange.who, user), exchange.method)(url, data, **kwargs)
    monkeypatch.undo()
    return response


def _raiser(exc: Exception):
    def fail(**kwargs):
        raise exc

    return fail


def _check_problem(response, schema: dict) -> None:
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    body = json.loads(response.content)
    OAS31Validator(schema["components"]["schemas"]["Problem"]).validate(body)
    assert body["status"] == response.status_code and body["type"] == "about:blank"


@pytest.mark.parametrize("route", _api_routes())
def test_every_api_route_answers_as_the_schema_says(route, world, schema, clinician, settings, monkeypatch):
    assert route in EXCHANGES, f"the API route {route!r} has no exchanges in this test: add some"
    openapi = _openapi(schema)
    answered: dict[tuple[str | None, str], set[int]] = {}
    arrays: dict[tuple[str | None, str], dict[str, bool]] = {}
    for exchange in EXCHANGES[route]:
        response = _send(exchange, world, clinician, settings, monkeypatch)
        what = f"{exchange.method.upper()} {exchange.url} as {exchange.who}"
        assert response.status_code == exchange.status, (what, exchange.status, response.content[:300])
        assert response.wsgi_request.resolver_match.url_name == route, (what, "is another route's")
        if response.status_code >= 400:
            _check_problem(response, schema)
        if route in OUTSIDE_THE_SCHEMA or response.status_code == 405:
            continue  # no operation to check it against: the problem body was checked above
        operation = (_template(schema, response.wsgi_request.path), exchange.method)
        openapi.validate_response(_Request(response.wsgi_request), DjangoOpenAPIResponse(response))
        answered.setdefault(operation, set()).add(response.status_code)
        if response.status_code < 300 and response.get("Content-Type", "").startswith("application/json"):
            seen = arrays.setdefault(operation, {})
            for path, filled in _arrays(json.loads(response.content)).items():
                seen[path] = seen.get(path, False) or filled

    for (path, method), statuses in answered.items():
        declared = {int(code) for code in schema["paths"][path][method]["responses"]}
        # 500 is exercised once (case detail); 401 and 403 are one case: who is refused gets either.
        untried = declared - statuses - {500} - ({401, 403} if statuses & {401, 403} else set())
        assert not untried, f"{method.upper()} {path} declares {sorted(untried)}: add exchanges for them"
        assert any(200 <= s < 300 for s in statuses), f"{method.upper()} {path}: no successful exchange"
        # An array that was empty in every answer had its items' schema checked against nothing.
        never_filled = sorted(name for name, filled in arrays.get((path, method), {}).items() if not filled)
        assert not never_filled, f"{method.upper()} {path}: no exchange returned items in {never_filled}"


def test_every_schema_operation_has_an_exchange(schema):
    covered = {
        (
            _template(
                schema,
                exchange.url.split("?")[0].format(
                    ready=1,
                    pending=1,
                    done_run=1,
                    queued_run=1,
                    diagnosis=1,
                    corrected=1,
                    dicom=1,
                    dicom_run=1,
                    regions=1,
                ),
            ),
            exchange.method,
        )
        for exchanges in EXCHANGES.values()
        for exchange in exchanges
    }
    operations = {(path, method) for path, methods in schema["paths"].items() for method in methods}
    assert operations <= covered, sorted(operations - covered)


def test_swagger_ui_comes_from_this_site_not_a_cdn(clinician):
    client = APIClient()
    client.force_authenticate(clinician)
    page = client.get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/" in page and "cdn" not in page.lower()
