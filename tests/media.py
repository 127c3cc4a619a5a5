"""Stored media as the storage API sees them, whatever the backend: a folder (``MEDIA_ROOT``) or a bucket
of an S3-compatible object store (``TUMORSITE_S3_BUCKET``; CI's production pass). Tests look at media
only through these, never at a path on disk, so they pass on both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import botocore.loaders
import pytest
from django.core.files.storage import default_storage
from storages.backends.s3 import S3Storage

S3_BACKEND = "storages.backends.s3.S3Storage"
# What points the site at an object store (tumorsite/settings/base.py; docs/operations.md).
OBJECT_STORE_VARIABLES = (
    "TUMORSITE_S3_BUCKET",
    "TUMORSITE_S3_ENDPOINT_URL",
    "TUMORSITE_S3_REGION",
    "TUMORSITE_S3_PREFIX",
    "TUMORSITE_S3_ADDRESSING_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


def stored_names(folder: str = "") -> list[str]:
    """Every name stored under ``folder`` (the storage's root by default), sorted, as the rows name
    them: ``scans/2026/12/<hex>.png``."""
    try:
        directories, files = default_storage.listdir(folder)
    except FileNotFoundError:  # a folder not created yet
        return []
    prefix = f"{folder}/" if folder else ""
    names = [prefix + name for name in files]
    for directory in directories:
        names.extend(stored_names(prefix + directory))
    return sorted(names)


def stored_bytes() -> dict[str, bytes]:
    """Every stored file's name and content."""
    contents = {}
    for name in stored_names():
        with default_storage.open(name, "rb") as f:
            contents[name] = f.read()
    return contents


def in_object_store(settings) -> bool:
    return settings.STORAGES["default"]["BACKEND"] == S3_BACKEND


def isolate_media(settings, tmp_path) -> None:
    """This test's media apart from every other test's: its own folder, or in an object store its own key
    prefix under the configured one (the bucket is shared by the whole run)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    if in_object_store(settings):
        default = settings.STORAGES["default"]
        options = default.get("OPTIONS", {})
        location = "/".join(p for p in (options.get("location", ""), "tests", uuid.uuid4().hex) if p)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {**default, "OPTIONS": {**options, "location": location}},
        }


@contextmanager
def one_botocore_loader() -> Iterator[None]:
    """Every S3Storage made inside shares one botocore loader. boto3 reads its JSON service models afresh
    for each new session (about 0.25 s a storage here), and each test gets a storage of its own."""
    loader = botocore.loaders.create_loader()
    create_session = S3Storage._create_session

    def _create_session(self):
        session = create_session(self)
        session._session.register_component("data_loader", loader)
        return session

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S3Storage, "_create_session", _create_session)
        yield
