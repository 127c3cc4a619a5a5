"""Every URL pattern of the site, tried as each role: who gets in, who is sent to sign in, who is refused.

THE TABLE (``ROWS``), one row per URL pattern of ``tumorsite.urls``:

    "namespace:name": {"METHOD": LEAST_ROLE, ...},

- the key is the pattern's name as ``reverse`` takes it (``"case-detail"``, ``"api:case-list"``);
- each method listed is tried (GET, and POST/DELETE/PATCH for the routes that write), with an empty body;
- LEAST_ROLE is the lowest rung allowed, roles being cumulative:
  ANYONE < SIGNED_IN (any account, even one with no role) < VIEWER < CLINICIAN < REVIEWER < ADMIN.

Expected, for each persona (anonymous, no role, viewer, clinician, reviewer, admin) and method:
- allowed: any answer that is not 401, 403, a sign-in redirect or a server error (a 400 for the empty
  body, a 404, a 405 or a redirect back to the page all mean the role was let in);
- otherwise, a page sends an anonymous visitor to sign in and answers 403 to a signed-in account; the
  API answers 401 or 403 to both; the admin site sends everyone it refuses to its own sign-in.

The admin site and Django's auth pages are one representative row each (``admin:index``, ``login``).
A pattern with no row fails ``test_every_url_pattern_has_a_row``: a new route must say who may use it.
The URL arguments come from ``_world``; a new argument name fails until it has a value there.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from recommender.services import diagnosis_record
from segmentation.testing import make_case, synthetic_slice
from tests.conftest import UserFactory, with_roles
from tests.web.builders import add_finished_run

pytestmark = pytest.mark.django_db

ANYONE, SIGNED_IN, VIEWER, CLINICIAN, REVIEWER, ADMIN = range(6)
PERSONAS = {  # persona -> its rung
    "anonymous": ANYONE,
    "no_role": SIGNED_IN,
    "viewer": VIEWER,
    "clinician": CLINICIAN,
    "reviewer": REVIEWER,
    "admin": ADMIN,
}

ROWS: dict[str, dict[str, int]] = {
    # --- outside the application ---
    "healthz": {"GET": ANYONE},
    "healthz-live": {"GET": ANYONE},
    "healthz-ready": {"GET": ANYONE},
    "admin:index": {"GET": ADMIN},  # the admin site (representative row)
    "login": {"GET": ANYONE, "POST": ANYONE},  # django.contrib.auth's pages (representative row)
    # --- pages ---
    "case-list": {"GET": VIEWER},
    "upload": {"GET": CLINICIAN},
    "case-detail": {"GET": VIEWER},
    "case-state": {"GET": VIEWER},
    "case-slice": {"GET": VIEWER},
    "case-pixels": {"GET": VIEWER},
    "case-thumbnail": {"GET": VIEWER},
    "case-overlay": {"GET": VIEWER},
    "case-best-mask": {"GET": VIEWER},
    "case-other-region": {"GET": VIEWER},
    "case-mask": {"GET": VIEWER},
    "case-mask-version": {"GET": VIEWER},
    "case-mask-restore": {"GET": CLINICIAN, "POST": CLINICIAN},
    "run-mask": {"GET": VIEWER},
    "run-probability": {"GET": VIEWER},
    "case-correct": {"GET": CLINICIAN, "POST": CLINICIAN},
    "case-tumour-type": {"GET": CLINICIAN, "POST": CLINICIAN},
    "case-diagnosis-add": {"GET": CLINICIAN, "POST": CLINICIAN},
    "case-diagnosis-remove": {"GET": CLINICIAN, "POST": CLINICIAN},
    "case-similar": {"GET": VIEWER},
    "case-report": {"GET": VIEWER},
    "run-review": {"GET": REVIEWER, "POST": REVIEWER},
    "patient-list": {"GET": VIEWER},
    "patient-detail": {"GET": VIEWER},
    "diagnosis-list": {"GET": VIEWER},
    "diagnosis-detail": {"GET": VIEWER},
    "diagnosis-rename": {"GET": ADMIN, "POST": ADMIN},
    "diagnosis-retire": {"GET": ADMIN, "POST": ADMIN},
    "diagnosis-merge": {"GET": ADMIN, "POST": ADMIN},
    # --- API ---
    "api:auth-token": {"POST": ANYONE},  # the sign-in itself
    "api:case-list": {"GET": VIEWER, "POST": CLINICIAN},
    "api:case-detail": {"GET": VIEWER, "PATCH": CLINICIAN},
    "api:case-thumbnail": {"GET": VIEWER},
    "api:case-similar": {"GET": VIEWER},
    "api:case-other-regions": {"GET": VIEWER},
    "api:case-other-region": {"GET": VIEWER},
    "api:case-masks": {"GET": VIEWER, "POST": CLINICIAN},
    "api:case-mask-version": {"GET": VIEWER},
    "api:case-mask-version-dicom": {"GET": VIEWER},
    "api:case-mask-dicom": {"GET": VIEWER},
    "api:case-mask-restore": {"POST": CLINICIAN},
    "api:case-diagnoses": {"POST": CLINICIAN},
    "api:case-diagnosis": {"DELETE": CLINICIAN},
    "api:segmentation-review": {"POST": REVIEWER},
    "api:segmentation-file": {"GET": VIEWER},
    "api:segmentation-dicom": {"GET": VIEWER},
    "api:diagnosis-list": {"GET": VIEWER},
    "api:schema": {"GET": VIEWER},
    "api:docs": {"GET": VIEWER},
    "api:no-endpoint": {"GET": VIEWER, "POST": VIEWER},
    # --- DICOMweb ---
    "dicomweb-studies": {"POST": CLINICIAN},  # STOW-RS: instances become cases, as uploads
}

# The representative rows stand for every pattern of these includes.
REPRESENTED = {"admin": "admin:index", "django.contrib.auth.urls": "login"}


def _patterns(resolvers=None, namespace: str = "", kwargs: frozenset = frozenset()):
    """(name, URL keyword arguments) of every pattern of the URLconf, includes flattened."""
    for entry in get_resolver().url_patterns if resolvers is None else resolvers:
        names = kwargs | set(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            module = getattr(entry.urlconf_module, "__name__", "")
            represented = REPRESENTED.get(entry.namespace) or REPRESENTED.get(module)
            if represented:
                yield represented, frozenset()
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry.url_patterns, inner, frozenset(names))
        elif isinstance(entry, URLPattern):
            yield (
                (f"{namespace}{entry.name}" if entry.name else f"<unnamed {entry.pattern}>"),
                frozenset(names),
            )


@pytest.fixture
def _world(db):
    """A case with an AI run and a recorded diagnosis: the values of every URL argument."""
    author = with_roles(UserFactory(username="author"), "clinician")
    case = make_case(user=author, patient="ROLES-1", seed=5, size=64)
    _, lesion = synthetic_slice(64, center=(30, 30), radius=6, seed=5)
    run = add_finished_run(case, "ensemble", lesion, ensemble=True)
    diagnosis, _, _ = diagnosis_record(case=case, name="Meningioma", user=author)
    return {
        "case_id": case.pk,
        "run_id": run.pk,
        "diagnosis_id": diagnosis.pk,
        "patient_id": case.patient_id,
        "fmt": "png",
        "kind": "mask",
        "number": 1,
        "rank": 1,
    }


@pytest.fixture
def clients(db):
    """A client per persona, signed in as a fresh account with exactly that role."""
    made = {"anonymous": APIClient()}
    for persona in ("no_role", "viewer", "clinician", "reviewer", "admin"):
        user = UserFactory(username=f"matrix-{persona}", is_staff=persona == "admin")
        if persona != "no_role":
            with_roles(user, persona)
        made[persona] = APIClient()
        made[persona].force_login(user)
    return made


def _outcome(response) -> str:
    if response.status_code in (401, 403):
        return "refused"
    location = response.get("Location", "") if response.status_code == 302 else ""
    if location.startswith(("/accounts/login/", "/admin/login/")):
        return "sign-in"
    return "allowed"


def _expected(route: str, persona: str, least: int) -> set[str]:
    if PERSONAS[persona] >= least:
        return {"allowed"}
    if route.startswith("admin:"):
        return {"sign-in"}
    if route.startswith(("api:", "dicomweb-")):  # DICOMweb is an API too: 401/403, never a sign-in page
        return {"refused"}
    return {"sign-in"} if persona == "anonymous" else {"refused"}


def test_every_url_pattern_has_a_row():
    routes = {name for name, _ in _patterns()}
    assert not routes - set(ROWS), (
        f"URL patterns without a row in ROWS (add one): {sorted(routes - set(ROWS))}"
    )
    assert not set(ROWS) - routes, f"rows for URL patterns that no longer exist: {sorted(set(ROWS) - routes)}"


def test_every_role_gets_what_the_table_says(_world, clients):
    wrong = []
    for route, argument_names in sorted(set(_patterns())):
        missing = argument_names - set(_world)
        assert not missing, f"{route}: no value for {sorted(missing)} in _world (add one)"
        url = reverse(route, kwargs={name: _world[name] for name in argument_names})
        for method, least in ROWS[route].items():
            for persona, client in clients.items():
                response = getattr(client, method.lower())(url)
                got = _outcome(response)
                if got not in _expected(route, persona, least) or response.status_code >= 500:
                    wrong.append(f"{method} {url} ({route}) as {persona}: {response.status_code} ({got})")
    assert not wrong, "\n".join(wrong)


def test_a_signed_in_account_without_a_role_is_told_what_to_do(clients, _world):
    response = clients["no_role"].get(reverse("case-detail", args=[_world["case_id"]]))
    page = response.content.decode()
    assert response.status_code == 403 and "no role that allows" in page and "Ask an administrator" in page
    problem = clients["no_role"].get(reverse("api:case-detail", args=[_world["case_id"]]))
    assert problem.status_code == 403 and problem["Content-Type"] == "application/problem+json"
    assert "Ask an administrator" in problem.json()["detail"]
