"""The four roles: Django groups whose permissions say what their members may do.

Each role holds the one before it and adds its own rights (a reviewer can do all a clinician can). The
groups are made, and kept to exactly these permissions, by ``roles_sync``, which runs after every
``migrate`` (``clinic.apps``): a permission granted to a role by hand in the admin is taken away again
at the next migrate, so this table stays the one statement of the policy. Other groups (the old
``clinicians`` group of earlier demos included) are left alone; they grant nothing any more.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEWER = "viewer"
CLINICIAN = "clinician"
REVIEWER = "reviewer"
ADMIN = "admin"

_VIEWER = (
    # Reads: cases, their pictures and masks (downloads), similar cases, reports, patients, the catalogue.
    "cases.view_case",
    "cases.view_patient",
    "cases.view_scan",
    "cases.view_diagnosis",
    "cases.view_casediagnosis",
    "segmentation.view_segmentationrun",
    "segmentation.view_modelversion",
)
_CLINICIAN = (
    "cases.add_case",  # upload
    "cases.correct_mask",
    "cases.set_tumour_type",
    "cases.add_casediagnosis",
    "cases.delete_casediagnosis",
)
_REVIEWER = ("segmentation.review_segmentationrun",)  # validate or reject an AI mask
_ADMIN = (
    # Members must also be staff (is_staff) to reach /admin/; a group cannot grant that.
    "cases.curate_diagnosis",
    "cases.change_diagnosis",
    "audit.view_auditentry",
    "segmentation.change_modelversion",
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.view_group",
    # The failed sign-ins, and lifting a lock-out early by deleting its attempt (docs/operations.md).
    "axes.view_accessattempt",
    "axes.delete_accessattempt",
    "axes.view_accessfailurelog",
)

ROLES: dict[str, tuple[str, ...]] = {
    VIEWER: _VIEWER,
    CLINICIAN: _VIEWER + _CLINICIAN,
    REVIEWER: _VIEWER + _CLINICIAN + _REVIEWER,
    ADMIN: _VIEWER + _CLINICIAN + _REVIEWER + _ADMIN,
}


def _permissions(names: tuple[str, ...], using: str) -> list[Permission]:
    """The Permission rows for ``app_label.codename`` names; a name with no row is a mistake in ROLES."""
    wanted = [name.split(".", 1) for name in names]
    query = Q()
    for app_label, codename in wanted:
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.using(using).filter(query).select_related("content_type"))
    missing = set(names) - {f"{p.content_type.app_label}.{p.codename}" for p in found}
    if missing:
        raise LookupError(f"roles_sync: no such permission {sorted(missing)}; fix clinic.roles.ROLES.")
    return found


def roles_sync(*, using: str = "default") -> dict[str, Group]:
    """Create the role groups that are missing and set each one's permissions to exactly ROLES' list.

    Idempotent: running it again changes nothing. Touches no other group and no user's membership.
    """
    groups = {}
    for name, permission_names in ROLES.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(_permissions(permission_names, using))
        groups[name] = group
    return groups
