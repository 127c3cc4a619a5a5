"""Issue #31, Done when: every bad upload, through the API (a token) and the upload page (its session and
CSRF token), gets a 4xx RFC 9457 problem with a message, and leaves no row and no file behind.

Odd file names (300 characters, unicode, NUL, a path) are not bad in themselves: carrying a bad file they
are refused like any other, and carrying a good one they make a case whose stored file has a generated
name under MEDIA_ROOT and whose label is the cleaned name.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
from cases.models import Case, Patient, Scan
from clinic.api.errors import PROBLEM_CONTENT_TYPE
from segmentation.models import SegmentationRun
from tests.cases.builders import dicom_bytes, png_bytes, synthetic_slice, write_figshare_mat
from tests.media import stored_names

pytestmark = pytest.mark.django_db

UPLOAD = "/api/cases/"


def _png() -> bytes:
    return png_bytes(synthetic_slice()[0])


def _huge_png(width: int, height: int) -> bytes:
    """A real PNG of width x height black pixels: a few kB that decode to width * height bytes."""
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _dicom_without_pixels() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _mat_without_cjdata(tmp_path: Path) -> bytes:
    image = np.zeros((16, 16), np.int16)
    return write_figshare_mat(tmp_path / "x.mat", image, None, with_cjdata=False).read_bytes()


@dataclass(frozen=True)
class Bad:
    name: str
    filename: str
    body: Callable[[Path], bytes]
    status: int
    message: str  # a regex the problem's detail must match
    max_upload_mb: int | None = None


BAD_INPUTS = [
    Bad("0-byte", "empty.png", lambda _: b"", 400, "empty"),
    Bad("truncated PNG", "cut.png", lambda _: _png()[:70], 400, "truncated or damaged"),
    Bad(
        "decompression bomb",
        "bomb.png",
        lambda _: _huge_png(8000, 8000),
        400,
        r"too large \(8000x8000 pixels\)",
    ),
    Bad(
        "text named .png", "notes.png", lambda _: b"Patient notes, not an image.\n" * 20, 400, "not an image"
    ),
    Bad(
        "HTML named .png",
        "page.png",
        lambda _: b"<!doctype html><html><body><script>alert(1)</script></body></html>",
        400,
        "not an image",
    ),
    Bad(
        "SVG named .png",
        "vector.png",
        lambda _: b'<svg xmlns="http://www.w3.org/2000/svg" width="9999" height="9999"><rect/></svg>',
        400,
        "not an image",
    ),
    Bad(
        "DICM preamble with garbage",
        "IM0001.dcm",
        lambda _: b"\0" * 128 + b"DICM" + bytes(range(256)) * 8,
        400,
        "DICOM",
    ),
    Bad("DICOM without pixel data", "report.dcm", lambda _: _dicom_without_pixels(), 400, "no pixel data"),
    Bad(".mat without cjdata", "scan.mat", _mat_without_cjdata, 400, "no 'cjdata'"),
    Bad(
        "over-size file",
        "big.png",
        lambda _: _png() + b"\0" * (1024 * 1024 + 1),
        413,
        r"too large \(1\.0 MB\); the limit is 1 MB",
        max_upload_mb=1,
    ),
    Bad("300-character name", "n" * 296 + ".png", lambda _: _png()[:70], 400, "truncated or damaged"),
    Bad("unicode name", "IRM cérébrale 脑 🧠.png", lambda _: _png()[:70], 400, "truncated or damaged"),
    Bad("NUL in the name", "slice\x00.exe.png", lambda _: _png()[:70], 400, "truncated or damaged"),
    Bad("path traversal", "../../etc/x.png", lambda _: _png()[:70], 400, "truncated or damaged"),
]


def _multipart(filename: str, body: bytes, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """The request body a browser sends, built by hand: Django's test client would drop a path from the
    name before it is sent, and the server's own handling of the raw name is part of what is tested."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in (fields or {}).items()
    ]
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + body
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(params=["api", "upload page"])
def send(request, owner):
    """POST a file to the upload endpoint the way the API client or the upload page does."""
    if request.param == "api":
        token = Token.objects.create(user=owner)
        client, headers = Client(), {"Authorization": f"Token {token.key}"}
    else:
        client = Client(enforce_csrf_checks=True)
        client.force_login(owner)
        assert client.get("/upload/").status_code == 200  # sets the CSRF cookie, as opening the page does
        headers = {"X-CSRFToken": client.cookies["csrftoken"].value, "Accept": "application/json"}

    def post(filename: str, body: bytes, **fields: str):
        data, content_type = _multipart(filename, body, fields)
        return client.generic("POST", UPLOAD, data, content_type=content_type, headers=headers)

    return post


def _counts() -> tuple[int, ...]:
    return (
        Case.objects.count(),
        Scan.objects.count(),
        Patient.objects.count(),
        SegmentationRun.objects.count(),
        AuditEntry.objects.filter(event="case.uploaded").count(),
    )


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_a_bad_upload_gets_a_problem_with_a_message_and_leaves_nothing(send, bad, settings, tmp_path):
    if bad.max_upload_mb is not None:
        settings.TUMORSITE_MAX_UPLOAD_MB = bad.max_upload_mb
    send("before.png", png_bytes(synthetic_slice(centre=(30, 30))[0]))  # one case already there
    rows, files = _counts(), stored_names()

    response = send(bad.filename, bad.body(tmp_path))

    assert response.status_code == bad.status, response.content[:300]
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    problem = response.json()
    assert problem["status"] == bad.status and problem["instance"] == UPLOAD
    assert re.search(bad.message, problem["detail"]), problem["detail"]
    assert _counts() == rows
    assert stored_names() == files


ODD_NAMES = {
    # Django's upload handling already cuts a name to 255 characters, its extension kept.
    "300 characters": ("n" * 296 + ".png", "n" * 251 + ".png"),
    "unicode": ("IRM cérébrale 脑 🧠.png", "IRM cérébrale 脑 🧠.png"),
    "NUL": ("slice\x00.png", "slice.png"),
    "path traversal": ("../../etc/x.png", "x.png"),
    "windows path": ("C:\\Users\\dr\\..\\x.png", "x.png"),
}


@pytest.mark.parametrize(("sent", "kept"), ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_a_good_file_under_any_name_is_stored_under_a_generated_name(send, settings, sent, kept):
    response = send(sent, _png())

    assert response.status_code == 201, response.content[:300]
    scan = Case.objects.get(pk=response.json()["id"]).scan
    assert scan.original_filename == kept
    assert re.fullmatch(r"scans/\d{4}/\d{2}/[0-9a-f]{32}\.png", scan.file.name)
    assert stored_names() == [scan.file.name]


def test_the_same_file_again_is_a_409_naming_the_case_and_is_stored_once_unless_forced(send, settings):
    first = send("a.png", _png())
    assert first.status_code == 201
    case_id = first.json()["id"]

    again = send("a copy.png", _png())

    assert again.status_code == 409 and again["Content-Type"] == PROBLEM_CONTENT_TYPE
    problem = again.json()
    assert f"already uploaded as case {case_id}" in problem["detail"]
    assert problem["duplicate_of"]["id"] == case_id
    assert problem["duplicate_of"]["page"] == f"/cases/{case_id}/"
    assert problem["duplicate_of"]["url"].endswith(f"/api/cases/{case_id}/")
    assert (Case.objects.count(), len(stored_names())) == (1, 1)

    forced = send("a copy.png", _png(), force="true")

    assert forced.status_code == 201 and forced.json()["id"] != case_id
    assert (Case.objects.count(), len(stored_names())) == (2, 2)
    assert AuditEntry.objects.filter(event="case.uploaded").count() == 2
