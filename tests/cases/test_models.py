"""The clinical record's own invariants."""

import pytest
from django.db import IntegrityError
from django.db.models import ProtectedError

from cases.models import Case, MaskSource
from cases.selectors import case_base_list
from tests.conftest import CaseDiagnosisFactory, CaseFactory, DiagnosisFactory

pytestmark = pytest.mark.django_db


def test_a_case_joins_the_case_base_once_its_outline_is_known():
    plain, imported = CaseFactory(), CaseFactory(with_mask=True)
    corrected = CaseFactory(with_mask=True, mask_source=MaskSource.CORRECTED)
    assert not plain.in_case_base and imported.in_case_base and corrected.in_case_base
    assert set(case_base_list()) == {imported, corrected}


def test_a_diagnosis_is_recorded_once_per_case():
    link = CaseDiagnosisFactory()
    with pytest.raises(IntegrityError):
        CaseDiagnosisFactory(case=link.case, diagnosis=link.diagnosis)


def test_a_patient_with_cases_cannot_be_deleted():
    case = CaseFactory()
    with pytest.raises(ProtectedError):
        case.patient.delete()


def test_newest_cases_come_first():
    first, second = CaseFactory(), CaseFactory()
    assert list(Case.objects.all()) == [second, first]


def test_diagnosis_keys_are_unique():
    DiagnosisFactory(name="Meningioma", key="meningioma")
    with pytest.raises(IntegrityError):
        DiagnosisFactory._meta.model.objects.create(name="meningioma ", key="meningioma")
