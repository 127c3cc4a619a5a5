"""demo_setup: what `make demo` runs between the migrations and the server."""

import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.http import HttpRequest

from cases.management.commands.demo_setup import UNCHANGED
from cases.models import Case

pytestmark = pytest.mark.django_db

ROLES = {
    "demo-viewer": "viewer",
    "demo-clinician": "clinician",
    "demo-reviewer": "reviewer",
    "demo-admin": "admin",
}


def _table(out: str) -> dict[str, str]:
    """The printed table: username -> what the password column says."""
    rows = re.findall(r"^  (viewer|clinician|reviewer|admin) +(\S+) +(.+)$", out, re.M)
    return {username: password for _, username, password in rows}


def _signs_in(username: str, password: str) -> bool:
    return authenticate(HttpRequest(), username=username, password=password) is not None


@pytest.fixture
def no_follow_ups(settings):
    settings.TUMORSITE_DEMO_SETUP_COMMANDS = []


def test_it_creates_one_account_per_role_and_prints_passwords_that_sign_in(capsys, no_follow_ups):
    call_command("demo_setup")
    table = _table(capsys.readouterr().out)
    assert set(table) == set(ROLES)
    for username, role in ROLES.items():
        user = get_user_model().objects.get(username=username)
        assert list(user.groups.values_list("name", flat=True)) == [role]
        assert _signs_in(username, table[username])
        assert user.is_staff == (role == "admin") and not user.is_superuser
    assert len(set(table.values())) == 4  # random, not one shared password


def test_running_it_again_keeps_the_passwords_unless_asked_to_reset(capsys, no_follow_ups):
    call_command("demo_setup")
    first = _table(capsys.readouterr().out)
    call_command("demo_setup")
    assert set(_table(capsys.readouterr().out).values()) == {UNCHANGED}
    assert all(_signs_in(username, password) for username, password in first.items())

    call_command("demo_setup", "--reset-passwords")
    reset = _table(capsys.readouterr().out)
    for username, password in reset.items():
        assert password != first[username] and _signs_in(username, password)
        assert not _signs_in(username, first[username])


def test_the_clinicians_name_and_password_can_be_given(capsys, no_follow_ups):
    call_command("demo_setup", "--username", "dr-demo", "--password", "s3cret-demo")
    table = _table(capsys.readouterr().out)
    assert table["dr-demo"] == "s3cret-demo" and _signs_in("dr-demo", "s3cret-demo")
    assert get_user_model().objects.get(username="dr-demo").groups.filter(name="clinician").exists()
    assert "demo-clinician" not in table


def test_running_it_again_sets_a_given_password_and_imports_nothing_twice(figshare_subset, settings):
    settings.TUMORSITE_DEMO_SETUP_COMMANDS = ["a_command_nobody_wrote"]  # missing follow-ups are skipped
    call_command("demo_setup", "--data", str(figshare_subset), "--password", "first")
    call_command("demo_setup", "--data", str(figshare_subset), "--password", "second")
    assert Case.objects.count() == 6
    assert _signs_in("demo-clinician", "second")
