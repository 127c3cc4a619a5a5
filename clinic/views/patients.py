"""The patients list and one patient's timeline of cases, with the tumour area over time."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from cases.models import Patient
from clinic.browse import patient_search, patient_timeline
from clinic.permissions import role_required
from clinic.views.shared import searched_page

PATIENTS_PER_PAGE = 50


@role_required("cases.view_patient")
def patient_list_view(request: HttpRequest) -> HttpResponse:
    page, q = searched_page(request, patient_search, per_page=PATIENTS_PER_PAGE)
    return render(request, "cases/patient_list.html", {"page": page, "q": q})


@role_required("cases.view_patient")
def patient_detail_view(request: HttpRequest, patient_id: int) -> HttpResponse:
    patient = get_object_or_404(Patient, pk=patient_id)
    timeline = patient_timeline(patient)
    return render(
        request,
        "cases/patient_detail.html",
        {"patient": patient, "timeline": timeline, "chart": _area_chart(timeline)},
    )


def _area_chart(timeline: list[dict]) -> dict | None:
    """Bars of the tumour area per case, in mm² when every measured case has a spacing, else in pixels."""
    measured = [row for row in timeline if row["area"]["area_px"] is not None]
    if not measured:
        return None
    in_mm2 = all(row["area"]["area_mm2"] is not None for row in measured)
    values = [row["area"]["area_mm2" if in_mm2 else "area_px"] for row in measured]
    top = max(values) or 1
    return {
        "unit": "mm²" if in_mm2 else "pixels",
        "bars": [
            {
                "case_id": row["case"].pk,
                "date": row["case"].created_at,
                "value": value,
                "percent": round(100 * value / top, 1),
            }
            for row, value in zip(measured, values, strict=True)
        ],
    }
