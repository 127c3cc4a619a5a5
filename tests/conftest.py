"""Project-wide fixtures: personas, model factories, isolated media (a folder or a key prefix), the real
dataset."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import factory
import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from cases.models import Case, CaseDiagnosis, Diagnosis, MaskSource, Patient, Scan, TumourType, TypeSource
from tests.cases.builders import png_bytes, synthetic_slice
from tests.media import isolate_media, one_botocore_loader
from tumorsite import queue

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


def _float32_if_keras_is_loaded() -> None:
    keras = sys.modules.get("keras")  # not imported here: the import costs seconds
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def _keras_dtype_policy_float32():
    """Every test starts and ends in Keras' float32 policy. A run with ``--precision auto`` sets mixed
    bfloat16 on a CPU with AMX or AVX512-BF16 (``ml.inference.set_precision``), and the next test in the same
    process, whatever its folder, would build its models in it and compute other numbers."""
    _float32_if_keras_is_loaded()
    yield
    _float32_if_keras_is_loaded()


# === The production pass: only the tests its services can change ===
# CI runs the suite twice: embedded, then against Postgres, Redis, an object store and a Celery worker. A test
# in tests/ml that touches no database runs ml/, which imports no Django (.importlinter, "ml-is-pure"), or a
# command over files alone; the docs', house rules' and help texts' tests read the repository's files and
# the commands' parsers. They run the same in both modes, so the second pass (`--mode-dependent-only`)
# leaves them to the first. pytest-django refuses a database to a test that did not ask for one, so a test
# left out here cannot have needed Postgres without failing in the first pass.
MODE_FREE = ("tests/ml/", "tests/test_docs.py", "tests/test_house_rules.py", "tests/test_help_texts.py")
# The fixtures through which a test reaches the database (pytest-django's), and so the mode's engine.
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}


def pytest_addoption(parser):
    parser.addoption(
        "--mode-dependent-only",
        action="store_true",
        help="leave out the tests that run the same in every mode: those of tests/ml that use no database, "
        "and the docs', house rules' and help texts' (CI's production pass; the embedded pass ran them)",
    )


def runs_the_same_in_every_mode(item) -> bool:
    path = item.path.relative_to(REPO_ROOT).as_posix()
    uses_services = (
        item.get_closest_marker("django_db") is not None
        or item.get_closest_marker("services") is not None
        or bool(DATABASE_FIXTURES & set(item.fixturenames))
    )
    return path.startswith(MODE_FREE) and not uses_services


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--mode-dependent-only"):
        return
    left = [item for item in items if runs_the_same_in_every_mode(item)]
    if left:
        config.hook.pytest_deselected(items=left)
        gone = set(map(id, left))
        items[:] = [item for item in items if id(item) not in gone]


# === Factories ===


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    identifier = factory.Sequence(lambda n: f"P{n:05d}")


class ScanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scan

    file = factory.django.FileField(
        filename="slice.png", data=factory.LazyFunction(lambda: png_bytes(synthetic_slice()[0]))
    )
    original_filename = "slice.png"
    format = "png"
    width = 64
    height = 64
    sha256 = factory.Faker("sha256")
    pixel_spacing_mm = None
    uploaded_by = None


class CaseFactory(factory.django.DjangoModelFactory):
    """A case with a 64x64 PNG scan. ``CaseFactory(with_mask=True)`` adds an imported ground truth."""

    class Meta:
        model = Case

    patient = factory.SubFactory(PatientFactory)
    scan = factory.SubFactory(ScanFactory)
    tumour_type = TumourType.GLIOMA
    tumour_type_source = TypeSource.CLINICIAN

    class Params:
        with_mask = factory.Trait(
            ground_truth_mask=factory.django.FileField(
                filename="mask.png",
                data=factory.LazyFunction(
                    lambda: png_bytes(np.where(synthetic_slice()[1], 255, 0).astype(np.uint8))
                ),
            ),
            mask_source=MaskSource.IMPORTED,
        )


class DiagnosisFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Diagnosis
        django_get_or_create = ("key",)

    name = factory.Sequence(lambda n: f"Diagnosis {n}")
    key = factory.LazyAttribute(lambda d: d.name.strip().lower())


class CaseDiagnosisFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CaseDiagnosis

    case = factory.SubFactory(CaseFactory)
    diagnosis = factory.SubFactory(DiagnosisFactory)


# === Personas ===
# One per role (clinic.roles; the groups exist in every migrated database, made by roles_sync):
# owner: the clinician whose cases a test is about; colleague: another clinician (both also reviewers,
# since the page tests validate and reject masks as the owner); viewer: reads only; reviewer: signs off
# AI masks; no_role: signed in, no role (refused everywhere); admin: the admin role and staff, not a
# superuser, so what it reaches is what the role grants. stranger is the same as no_role (older name).


def with_roles(user, *roles: str):
    """``user`` added to the named role groups (made by roles_sync after migrate, never here)."""
    groups = list(Group.objects.filter(name__in=roles))
    assert len(groups) == len(roles), f"no such role group among {roles}: is roles_sync connected?"
    user.groups.add(*groups)
    return user


@pytest.fixture
def owner(db):
    user = UserFactory(username="owner", first_name="Olivia", last_name="Owner")
    return with_roles(user, "clinician", "reviewer")


@pytest.fixture
def colleague(db):
    user = UserFactory(username="colleague", first_name="Carl", last_name="Colleague")
    return with_roles(user, "clinician", "reviewer")


@pytest.fixture
def viewer(db):
    return with_roles(UserFactory(username="viewer", first_name="Vera", last_name="Viewer"), "viewer")


@pytest.fixture
def reviewer(db):
    return with_roles(UserFactory(username="reviewer", first_name="Rita", last_name="Reviewer"), "reviewer")


@pytest.fixture
def no_role(db):
    return UserFactory(username="no_role")


@pytest.fixture
def stranger(db):
    return UserFactory(username="stranger")


@pytest.fixture
def admin(db):
    return with_roles(UserFactory(username="admin", is_staff=True), "admin")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


# === Environment ===


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader():
    with one_botocore_loader():
        yield


@pytest.fixture(autouse=True)
def _isolated_media(request, settings, tmp_path):
    """Every test stores media apart from the others (its own folder, or its own key prefix in the object
    store), except services tests: their worker must see the files."""
    if request.node.get_closest_marker("services") is None:
        isolate_media(settings, tmp_path)


@pytest.fixture
def queued_tasks_inline(monkeypatch) -> list[str]:
    """What the code under test queues (``tumorsite.queue.enqueue``) runs at once, in this thread and this
    test's transaction, instead of on the background thread or a worker; the tasks' names, in order."""
    names: list[str] = []

    def run_now(task, *args, **kwargs):
        names.append(task.name)
        return task.apply(args=args, kwargs=kwargs)

    monkeypatch.setattr(queue, "enqueue", run_now)
    return names


@pytest.fixture(scope="session")
def figshare_dir() -> Path:
    """The shared developer set (TUMORSITE_DATA, else ../shared/data/figshare beside the repo)."""
    path = Path(os.environ.get("TUMORSITE_DATA") or REPO_ROOT.parent / "shared" / "data" / "figshare")
    if not (path / "cases.csv").is_file():
        pytest.skip(f"the Figshare developer set is not at {path} (set TUMORSITE_DATA)")
    return path
