"""The patients list and one patient's history: their studies, each with its slices, and the tumour size
per study over time."""

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
    studies = _studies(timeline)
    return render(
        request,
        "cases/patient_detail.html",
        {"patient": patient, "timeline": timeline, "studies": studies, "chart": _area_chart(studies)},
    )


def _studies(timeline: list[dict]) -> list[dict]:
    """The timeline's cases grouped by study, oldest study first, each study's slices in slice order.

    A study is dated by its DICOM StudyDate, else by the day it was recorded (said as ``dated_by``); a
    case without a study (made before studies by a fixture or a script) stands for a study of its own.
    """
    groups: dict[object, list[dict]] = {}
    for row in timeline:
        case = row["case"]
        groups.setdefault(case.study_id or ("case", case.pk), []).append(row)
    studies = []
    for rows in groups.values():
        rows.sort(key=_slice_order)
        first = rows[0]["case"]
        study = first.study
        if study is not None and study.study_date is not None:
            date, dated_by = study.study_date, "study date"
        else:
            date, dated_by = (study.created_at if study is not None else first.created_at).date(), "recorded"
        studies.append({"study": study, "date": date, "dated_by": dated_by, "rows": rows})
    studies.sort(key=lambda s: (s["date"], s["rows"][0]["case"].pk))
    return studies


def _slice_order(row: dict) -> tuple:
    case = row["case"]
    return (
        case.slice_position is None,
        case.slice_position or 0.0,
        case.slice_number is None,
        case.slice_number or 0,
        case.pk,
    )


def _area_chart(studies: list[dict]) -> dict | None:
    """One bar per study, by date: its largest tumour area over its slices (the largest cross-section,
    as RANO measures a tumour on the slice where it is largest; a sum over slices would change with the
    slices sent, not with the tumour), in mm² when every measured slice has a spacing, else in pixels."""
    measured = [
        (study, [row for row in study["rows"] if row["area"]["area_px"] is not None]) for study in studies
    ]
    measured = [(study, rows) for study, rows in measured if rows]
    if not measured:
        return None
    in_mm2 = all(row["area"]["area_mm2"] is not None for _, rows in measured for row in rows)
    key = "area_mm2" if in_mm2 else "area_px"
    bars = []
    for study, rows in measured:
        largest = max(rows, key=lambda row: row["area"][key])
        bars.append(
            {
                "study_id": study["study"].pk if study["study"] is not None else None,
                "case_id": largest["case"].pk,
                "date": study["date"],
                "dated_by": study["dated_by"],
                "slices": len(study["rows"]),
                "value": largest["area"][key],
            }
        )
    top = max(bar["value"] for bar in bars) or 1
    for bar in bars:
        bar["percent"] = round(100 * bar["value"] / top, 1)
    return {"unit": "mm²" if in_mm2 else "pixels", "bars": bars}
