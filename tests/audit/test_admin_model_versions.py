"""A model version switched off (or its threshold changed) in the admin site is in the audit trail."""

import pytest

from segmentation.models import ModelVersion
from tests.audit.conftest import written

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(db):
    return ModelVersion.objects.create(
        name="unet_admin", architecture="unet", file_path="unet_admin.keras", file_sha256="ab" * 32
    )


def _form(version, **changes):
    data = {"name": version.name, "threshold": version.threshold, "input_size": version.input_size}
    if version.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_switching_a_version_off_in_the_admin_writes_one_entry(client, admin, version):
    client.force_login(admin)
    url = f"/admin/segmentation/modelversion/{version.pk}/change/"
    assert client.get(url).status_code == 200
    with written() as entries:
        response = client.post(url, _form(version, is_active=None, threshold="0.4"))
    assert response.status_code == 302, response.content[:2000]
    version.refresh_from_db()
    assert not version.is_active and version.threshold == pytest.approx(0.4)
    assert [e.event for e in entries] == ["model.changed"]
    entry = entries[0]
    assert entry.actor == admin and entry.object_pk == str(version.pk)
    assert entry.changes == {"is_active": [True, False], "threshold": [0.5, 0.4]}


def test_saving_unchanged_writes_nothing(client, admin, version):
    client.force_login(admin)
    with written() as entries:
        client.post(f"/admin/segmentation/modelversion/{version.pk}/change/", _form(version))
    assert entries == []


def test_the_admin_cannot_add_delete_or_repoint_a_version(client, admin, version):
    client.force_login(admin)
    assert client.get("/admin/segmentation/modelversion/add/").status_code == 403
    assert (
        client.post(f"/admin/segmentation/modelversion/{version.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    client.post(
        f"/admin/segmentation/modelversion/{version.pk}/change/",
        _form(version, file_sha256="cd" * 32, file_path="other.keras"),
    )
    version.refresh_from_db()
    assert version.file_sha256 == "ab" * 32 and version.file_path == "unet_admin.keras"
