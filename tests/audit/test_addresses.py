"""The address an entry records is the client's: the connection's, or, behind the trusted proxies, the one
the outermost of them saw; never a value the client wrote itself. django-axes and the throttles count
the same one."""

from __future__ import annotations

import pytest
from axes.helpers import get_client_ip_address
from django.test import Client, RequestFactory
from django.urls import reverse

from audit.addresses import client_address
from tests.audit.conftest import written


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "", "192.0.2.1"),
        (0, "203.0.113.9", "192.0.2.1"),  # no proxy: the header is the client's own writing
        (1, "", "192.0.2.1"),
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # a forged left-most value is ignored
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),  # what the outer proxy saw
        (3, "203.0.113.9, 10.0.0.2", "203.0.113.9"),  # fewer entries than proxies: the left-most there is
        (1, "203.0.113.9:51234", "203.0.113.9"),
        (1, "[2001:db8::7]:443", "2001:db8::7"),
        (1, "2001:db8::7", "2001:db8::7"),
        (1, "unknown", "192.0.2.1"),  # not an address: the connection's
    ],
)
def test_the_client_address_trusts_only_what_the_proxies_wrote(settings, proxies, forwarded, expected):
    settings.TUMORSITE_TRUSTED_PROXIES = proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", **extra)
    assert client_address(request) == expected


def test_axes_counts_the_same_address(settings):
    assert settings.AXES_CLIENT_IP_CALLABLE == "audit.addresses.client_address"
    settings.TUMORSITE_TRUSTED_PROXIES = 1
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert get_client_ip_address(request) == "203.0.113.9"


@pytest.mark.django_db
@pytest.mark.parametrize(("proxies", "expected"), [(0, "192.0.2.1"), (1, "203.0.113.9")])
def test_an_entry_records_the_client_address(settings, case, viewer, proxies, expected):
    settings.TUMORSITE_TRUSTED_PROXIES = proxies
    client = Client(REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    client.force_login(viewer)
    with written() as entries:
        assert client.get(reverse("case-detail", args=[case.pk])).status_code == 200
    assert [e.remote_addr for e in entries] == [expected]
