"""The role groups: made after every migrate, cumulative, and put back to exactly clinic.roles' lists."""

from itertools import pairwise

import pytest
from django.contrib.auth.models import Group, Permission

from clinic.roles import ROLES, roles_sync

pytestmark = pytest.mark.django_db


def _names(group: Group) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def test_every_migrated_database_has_the_four_roles_with_their_permissions():
    groups = {g.name: g for g in Group.objects.filter(name__in=ROLES)}
    assert set(groups) == {"viewer", "clinician", "reviewer", "admin"}
    for name, permissions in ROLES.items():
        assert _names(groups[name]) == set(permissions), name


def test_each_role_holds_the_one_below_it():
    ladder = [set(ROLES[name]) for name in ("viewer", "clinician", "reviewer", "admin")]
    assert all(lower < higher for lower, higher in pairwise(ladder))
    assert "cases.view_case" in ladder[0] and "cases.add_case" not in ladder[0]
    assert "segmentation.review_segmentationrun" in ladder[2] - ladder[1]
    assert {"cases.curate_diagnosis", "audit.view_auditentry"} <= ladder[3] - ladder[2]


def test_syncing_again_puts_a_hand_edited_role_back_and_leaves_other_groups_alone():
    viewer = Group.objects.get(name="viewer")
    viewer.permissions.add(Permission.objects.get(codename="correct_mask"))
    old = Group.objects.create(name="clinicians")
    old.permissions.add(Permission.objects.get(codename="view_case"))
    groups = Group.objects.count()

    roles_sync()
    roles_sync()

    assert _names(viewer) == set(ROLES["viewer"])
    assert Group.objects.count() == groups
    assert _names(old) == {"cases.view_case"}  # not a role: roles_sync neither fills nor empties it
