import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.crypto import get_random_string

# One account per role. The groups are clinic.roles' (made by roles_sync after every migrate); their
# names are spelled here because the record does not import the pages' app.
DEMO_ACCOUNTS = {  # role -> (username, first name)
    "viewer": ("demo-viewer", "Viewer"),
    "clinician": ("demo-clinician", "Clinician"),
    "reviewer": ("demo-reviewer", "Reviewer"),
    "admin": ("demo-admin", "Admin"),
}
DEFAULT_USERNAME = DEMO_ACCOUNTS["clinician"][0]
UNCHANGED = "(unchanged; --reset-passwords to set a new one)"


class Command(BaseCommand):
    help = (
        "Prepare the embedded demo: one account per role (demo-viewer, demo-clinician, demo-reviewer, "
        "demo-admin; the admin is also staff, for /admin/), each in its role's group, with a random "
        "password made when the account is created; the dataset import when a folder is given; then the "
        "follow-up commands in settings.TUMORSITE_DEMO_SETUP_COMMANDS that exist (e.g. sync_models). "
        "Ends with a table of the usernames and passwords (an existing account keeps its password unless "
        "--reset-passwords). Safe to run again; needs a migrated database (the role groups)."
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
            help=f"The demo clinician's username (default: $DEMO_USERNAME or {DEFAULT_USERNAME}).",
        )
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_PASSWORD", ""),
            help="The demo clinician's password, set on every run (default: $DEMO_PASSWORD; when empty, "
            "a random one is made when the account is created).",
        )
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Give every existing demo account a new random password (printed in the table).",
        )

    def handle(self, *args, data: str, username: str, password: str, reset_passwords: bool, **options):
        groups = {group.name: group for group in Group.objects.filter(name__in=DEMO_ACCOUNTS)}
        if len(groups) != len(DEMO_ACCOUNTS):
            missing = sorted(set(DEMO_ACCOUNTS) - set(groups))
            raise CommandError(f"The role groups {missing} do not exist: run `manage.py migrate` first.")
        rows = []
        for role, (default_name, first_name) in DEMO_ACCOUNTS.items():
            is_clinician = role == "clinician"
            name = username if is_clinician else default_name
            given = password if is_clinician else ""
            shown = self._account(role, name, first_name, groups[role], given, reset_passwords)
            rows.append((role, name, shown))

        if data:
            call_command("import_cases", data)
        else:
            self.stdout.write(self.style.WARNING("No dataset folder given: starting with an empty record."))

        available = get_commands()
        for name in getattr(settings, "TUMORSITE_DEMO_SETUP_COMMANDS", []):
            if name in available:
                self.stdout.write(f"-- {name}")
                call_command(name)

        self.stdout.write(self.style.SUCCESS("Demo accounts (sign in at /accounts/login/):"))
        self.stdout.write(f"  {'role':<10} {'username':<20} password")
        for role, name, shown in rows:
            self.stdout.write(f"  {role:<10} {name:<20} {shown}")

    def _account(self, role: str, username: str, first_name: str, group, given: str, reset: bool) -> str:
        """Create or update one demo account; the password to print, or UNCHANGED."""
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"first_name": "Demo", "last_name": first_name}
        )
        new_password = given or (get_random_string(16) if created or reset else "")
        if new_password:
            user.set_password(new_password)
        user.is_active = True
        if role == "admin":
            user.is_staff = True  # the admin site needs staff; no demo account is a superuser
        user.save()
        user.groups.add(group)
        return new_password or UNCHANGED
