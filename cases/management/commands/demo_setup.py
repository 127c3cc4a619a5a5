import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandParser

DEFAULT_USERNAME = "demo"
DEFAULT_PASSWORD = "tumorsite-demo"


class Command(BaseCommand):
    help = (
        "Prepare the embedded demo: a clinician account (created or reset), the dataset import when a folder "
        "is given, then the follow-up commands in settings.TUMORSITE_DEMO_SETUP_COMMANDS that exist "
        "(e.g. sync_models). Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data",
            default="",
            help="Dataset folder for import_cases (cases.csv, images/, masks/); empty: no import.",
        )
        parser.add_argument(
            "--username",
            default=os.environ.get("DEMO_USERNAME", DEFAULT_USERNAME),
            help=f"Demo clinician's username (default: $DEMO_USERNAME or {DEFAULT_USERNAME}).",
        )
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_PASSWORD", DEFAULT_PASSWORD),
            help=f"Demo clinician's password (default: $DEMO_PASSWORD or {DEFAULT_PASSWORD}).",
        )

    def handle(self, *args, data: str, username: str, password: str, **options):
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"first_name": "Demo", "last_name": "Clinician"}
        )
        user.set_password(password)
        user.is_active = True
        user.save()
        user.groups.add(Group.objects.get_or_create(name="clinicians")[0])

        if data:
            call_command("import_cases", data)
        else:
            self.stdout.write(self.style.WARNING("No dataset folder given: starting with an empty record."))

        available = get_commands()
        for name in getattr(settings, "TUMORSITE_DEMO_SETUP_COMMANDS", []):
            if name in available:
                self.stdout.write(f"-- {name}")
                call_command(name)

        self.stdout.write(self.style.SUCCESS(f"Demo clinician: username {username!r}, password {password!r}"))
