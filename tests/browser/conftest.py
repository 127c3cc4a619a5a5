"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

The tests skip only when /usr/bin/chromium is absent; CI installs it through apt (.ci/services.sh).
Screenshots go to $CI_ARTIFACTS, else test-artifacts/ (git-ignored). Segmentation runs on the embedded queue's
background thread with tiny untrained model bundles (segmentation.testing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from segmentation.testing import *  # noqa: F403  (shared fixtures: models_dir, media_dir, ...)
from tests.conftest import REPO_ROOT, UserFactory, with_roles

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Where CI collects its artefacts (.ci/run), else test-artifacts/ in the checkout (git-ignored).
ARTIFACTS = Path(os.environ.get("CI_ARTIFACTS") or REPO_ROOT / "test-artifacts")


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(
                    pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
                )


@pytest.fixture(autouse=True)
def _in_process_queue(settings):
    """Segmentations run on this process's background thread, in both modes.

    In CI's production mode a Celery worker is running too, but it reads another media folder than the
    one each test isolates (tests/conftest.py), so it could not open the uploads. What the browser tests
    check is the interface; the worker round trip has its own tests (tests/api, tests/cases).
    """
    settings.CELERY_BROKER_URL = ""


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module, stopped afterwards so no event loop outlives the browser tests."""
    # Playwright's sync API runs an event loop in this thread, so Django would refuse the ORM calls the
    # tests make between browser steps; those calls are plain synchronous code, which is safe here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 850}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(name: str, *, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def doctor(transactional_db):
    user = UserFactory(username="dr_browser", first_name="Dana", last_name="Browser")
    return with_roles(user, "clinician", "reviewer")  # the flows review masks too
