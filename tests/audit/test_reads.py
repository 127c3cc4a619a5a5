"""Opening a case and downloading its image, masks and report writes one entry each, page and API,
session and token; everything else is left out on purpose, and a new route must say which it is."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.audit_access import AUDITED_READS, NOT_AUDITED, NOT_AUDITED_NAMESPACES
from segmentation.models import SegmentationRun
from tests.audit.conftest import written

pytestmark = pytest.mark.django_db

ADDRESS = "10.1.2.3"


def _routes(resolver=None, namespace: str = "") -> dict[str, URLPattern]:
    """Every named route of the URLconf by its name with its namespaces (``api:case-detail``)."""
    routes = {}
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            routes |= _routes(entry, f"{namespace}{entry.namespace}:" if entry.namespace else namespace)
        elif isinstance(entry, URLPattern) and entry.name:
            routes.setdefault(namespace + entry.name, entry)
    return routes


def test_every_route_is_either_audited_or_says_why_not():
    undecided = [
        name
        for name in _routes()
        if name not in AUDITED_READS
        and name not in NOT_AUDITED
        and name.split(":")[0] not in NOT_AUDITED_NAMESPACES
    ]
    assert undecided == [], (
        f"add these routes to AUDITED_READS or NOT_AUDITED (clinic/audit_access.py): {undecided}"
    )
    assert not set(AUDITED_READS) & set(NOT_AUDITED)
    assert all(reason.strip() for reason in NOT_AUDITED.values())


def test_every_audited_route_exists_and_names_its_object_in_the_url():
    routes = _routes()
    for name, read in AUDITED_READS.items():
        assert name in routes, f"{name} is audited but no longer in the URLconf"
        pattern = routes[name].pattern
        arguments = set(getattr(pattern, "converters", {})) or set(pattern.regex.groupindex)
        assert read.kwarg in arguments, f"{name} has no {read.kwarg!r} argument ({sorted(arguments)})"


def _session(user):
    from django.test import Client  # noqa: PLC0415 (a second client, not pytest-django's fixture)

    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(user)
    return client


def _token(user):
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _run(case) -> SegmentationRun:
    return case.segmentation_runs.get()


# (how, route, its arguments from the case, event, the object: "case" or "run")
READS = [
    ("session", "case-detail", lambda c: [c.pk], "case.viewed", "case"),
    ("session", "api:case-detail", lambda c: [c.pk], "case.viewed", "case"),
    ("token", "api:case-detail", lambda c: [c.pk], "case.viewed", "case"),
    ("session", "case-report", lambda c: [c.pk], "report.viewed", "case"),
    ("session", "case-slice", lambda c: [c.pk], "image.downloaded", "case"),
    ("session", "case-mask", lambda c: [c.pk, "png"], "mask.downloaded", "case"),
    ("session", "case-mask", lambda c: [c.pk, "nii.gz"], "mask.downloaded", "case"),
    ("session", "case-mask-version", lambda c: [c.pk, 1, "png"], "mask.downloaded", "case"),
    ("token", "api:case-mask-version", lambda c: [c.pk, 1], "mask.downloaded", "case"),
    ("session", "run-mask", lambda c: [c.pk, _run(c).pk, "png"], "mask.downloaded", "run"),
    ("token", "api:segmentation-file", lambda c: [_run(c).pk, "mask"], "mask.downloaded", "run"),
    ("session", "api:segmentation-file", lambda c: [_run(c).pk, "mask"], "mask.downloaded", "run"),
]


# The ids name each read by its strings (pytest numbers the two of case-mask apart): the same in every
# process, as pytest-xdist needs.
@pytest.mark.parametrize(
    ("how", "route", "arguments", "event", "target"), READS, ids=lambda v: v if isinstance(v, str) else "by"
)
def test_each_audited_read_writes_one_entry_with_who_what_and_where(
    case, viewer, how, route, arguments, event, target
):
    client = _session(viewer) if how == "session" else _token(viewer)
    url = reverse(route, args=arguments(case))
    with written() as entries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    assert len(entries) == 1, [e.event for e in entries]
    entry = entries[0]
    obj = case if target == "case" else _run(case)
    assert entry.event == event
    assert entry.actor == viewer
    assert entry.remote_addr == ADDRESS
    assert (entry.content_type.model_class(), entry.object_pk) == (type(obj), str(obj.pk))
    assert entry.object_repr == str(obj)
    assert entry.additional_data["route"] == route


def test_a_read_that_is_refused_or_not_found_writes_nothing(case, no_role, viewer):
    refused, refused_token, reader = _session(no_role), _token(no_role), _session(viewer)
    with written() as entries:
        assert refused.get(reverse("case-detail", args=[case.pk])).status_code == 403
        assert refused_token.get(reverse("api:case-detail", args=[case.pk])).status_code == 403
        assert reader.get(reverse("case-detail", args=[case.pk + 1000])).status_code == 404
        assert APIClient().get(reverse("api:case-detail", args=[case.pk])).status_code == 403
    assert entries == []


def test_the_parts_of_the_case_page_and_the_lists_write_nothing(case, viewer):
    client = _session(viewer)
    with written() as entries:
        for route, arguments in [
            ("case-thumbnail", [case.pk]),
            ("case-overlay", [case.pk]),
            ("case-state", [case.pk]),
            ("case-list", []),
            ("api:case-list", []),
        ]:
            assert client.get(reverse(route, args=arguments)).status_code == 200, route
    assert entries == []


def test_a_cached_picture_revalidated_by_the_browser_writes_nothing(case, viewer):
    """Only a 2xx counts: a 304 sent nothing new."""
    client = _session(viewer)
    first = client.get(reverse("case-thumbnail", args=[case.pk]))
    with written() as entries:
        again = client.get(reverse("case-thumbnail", args=[case.pk]), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert entries == []
