"""demo_setup: what `make demo` runs between the migrations and the server."""

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.http import HttpRequest

from cases.models import Case

pytestmark = pytest.mark.django_db


def test_it_creates_a_clinician_who_can_sign_in_and_prints_the_credentials(capsys, settings):
    settings.TUMORSITE_DEMO_SETUP_COMMANDS = []
    call_command("demo_setup", "--username", "dr-demo", "--password", "s3cret-demo")
    user = authenticate(HttpRequest(), username="dr-demo", password="s3cret-demo")
    assert user is not None and user.groups.filter(name="clinicians").exists()
    assert "'dr-demo'" in capsys.readouterr().out


def test_running_it_again_resets_the_password_and_imports_nothing_twice(figshare_subset, settings):
    settings.TUMORSITE_DEMO_SETUP_COMMANDS = ["a_command_nobody_wrote"]  # missing follow-ups are skipped
    call_command("demo_setup", "--data", str(figshare_subset), "--password", "first")
    call_command("demo_setup", "--data", str(figshare_subset), "--password", "second")
    assert Case.objects.count() == 6
    assert authenticate(HttpRequest(), username="demo", password="second") is not None
