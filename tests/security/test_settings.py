"""Production cookies are secure and HttpOnly, and a bad sign-in protection value stops start-up."""

import json

import pytest

from tests.test_settings_modes import _run

COOKIES = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name) for name in (
    "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS")}
    | {"proxies": settings.REST_FRAMEWORK["NUM_PROXIES"]}))
"""


def test_production_cookies_go_over_https_only_and_the_session_one_is_out_of_scripts_reach(tmp_path):
    result = _run(
        ["-c", COOKIES],
        "tumorsite.settings.production",
        tmp_path,
        SECRET_KEY="s" * 50,
        TUMORSITE_PSEUDONYM_KEY="p" * 40,
    )
    assert result.returncode == 0, result.stderr
    flags = json.loads(result.stdout.strip().splitlines()[-1])
    assert flags["SESSION_COOKIE_SECURE"] and flags["SESSION_COOKIE_HTTPONLY"] and flags["CSRF_COOKIE_SECURE"]
    assert flags["SECURE_HSTS_SECONDS"] > 0
    assert flags["proxies"] == 1  # behind the reverse proxy: the client's address is its last hop's


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("TUMORSITE_TOKEN_RATE", "5 per minute", "use <requests>/<second|minute|hour|day>"),
        ("TUMORSITE_SIGNIN_FAILURE_LIMIT", "0", "use a whole number of at least 1"),
        ("TUMORSITE_TOKEN_TTL_HOURS", "a day", "is not an integer"),
    ],
)
def test_a_bad_sign_in_protection_value_stops_start_up_with_its_name(tmp_path, variable, value, words):
    result = _run(
        ["-c", "import django; django.setup()"], "tumorsite.settings.base", tmp_path, **{variable: value}
    )
    assert result.returncode != 0
    assert variable in result.stderr and words in result.stderr
