import pytest
from rest_framework.test import APIClient

from segmentation.testing import *  # noqa: F403  (shared fixtures)


@pytest.fixture
def api(clinician):
    """An API client signed in as the clinician (who also reviews)."""
    client = APIClient()
    client.force_authenticate(clinician)
    return client
