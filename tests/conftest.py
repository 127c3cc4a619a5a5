"""Project-wide fixtures: personas, model factories, an isolated media folder, the real dataset."""

from __future__ import annotations

import os
from pathlib import Path

import factory
import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from cases.models import Case, CaseDiagnosis, Diagnosis, MaskSource, Patient, Scan, TumourType, TypeSource
from tests.cases.builders import png_bytes, synthetic_slice

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


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
# owner: the clinician whose cases a test is about; colleague: another clinician; stranger: a signed-in
# account that is not a clinician; admin: staff superuser.


@pytest.fixture
def clinicians_group(db):
    return Group.objects.get_or_create(name="clinicians")[0]


@pytest.fixture
def owner(clinicians_group):
    user = UserFactory(username="owner", first_name="Olivia", last_name="Owner")
    user.groups.add(clinicians_group)
    return user


@pytest.fixture
def colleague(clinicians_group):
    user = UserFactory(username="colleague", first_name="Carl", last_name="Colleague")
    user.groups.add(clinicians_group)
    return user


@pytest.fixture
def stranger(db):
    return UserFactory(username="stranger")


@pytest.fixture
def admin(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


# === Environment ===


@pytest.fixture(autouse=True)
def _isolated_media(request, settings, tmp_path):
    """Every test writes media into its own folder, except services tests: their worker must see the files."""
    if request.node.get_closest_marker("services") is None:
        settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(scope="session")
def figshare_dir() -> Path:
    """The shared developer set (TUMORSITE_DATA, else ../shared/data/figshare beside the repo)."""
    path = Path(os.environ.get("TUMORSITE_DATA") or REPO_ROOT.parent / "shared" / "data" / "figshare")
    if not (path / "cases.csv").is_file():
        pytest.skip(f"the Figshare developer set is not at {path} (set TUMORSITE_DATA)")
    return path
