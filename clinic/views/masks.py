"""A case's outline history on the pages: any mask version as a download, and restoring one.

The history itself is a section of the case page (``clinic.browse.mask_history``); the version in use
is also served by ``case-mask`` (``clinic.views.pictures``).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cases import rendering
from cases.models import Case, MaskVersion
from cases.review import case_mask_restore
from cases.revisions import CaseEditConflict, revision_from_form
from cases.selectors import case_mask_version_get, mask_version_mask
from clinic.permissions import role_required
from clinic.views.shared import case_or_404, mask_download


def _version_or_404(case: Case, number: int) -> MaskVersion:
    version = case_mask_version_get(case=case, number=number)
    if version is None:
        raise Http404(f"Case {case.pk} has no mask version {number}.")
    return version


@role_required("cases.view_case")
def case_mask_version_view(request: HttpRequest, case_id: int, number: int, fmt: str) -> HttpResponse:
    """One version of the case's ground truth (the imported expert mask, a correction, a restore) as PNG,
    NIfTI or (a DICOM case) DICOM Segmentation, whether it is in use or not."""
    case = case_or_404(case_id)
    version = _version_or_404(case, number)
    stem = f"case{case.pk}_mask_v{version.number}_{version.source}"
    mask = mask_version_mask(version=version)
    return mask_download(case, mask, stem=stem, fmt=fmt, origin=rendering.mask_version_origin(version))


@role_required("cases.correct_mask")
@require_POST
def case_mask_restore_view(request: HttpRequest, case_id: int, number: int) -> HttpResponse:
    """Put version ``number`` back in use; it comes back as a new version, so nothing is lost."""
    case = case_or_404(case_id)
    version = _version_or_404(case, number)
    history = reverse("case-detail", args=[case.pk]) + "#mask-history"
    try:
        case_mask_restore(
            case=case,
            version=version,
            user=request.user,
            expected_revision=revision_from_form(request.POST.get("revision")),
        )
    except (ValueError, CaseEditConflict) as exc:
        messages.error(request, str(exc))
        return redirect(history)
    messages.success(
        request,
        f"Version {version.number} restored as version {case.mask_version.number}: it is now this case's "
        "outline. The earlier versions are all kept.",
    )
    return redirect(history)
