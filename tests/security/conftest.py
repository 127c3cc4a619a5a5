import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_throttles():
    """The throttles count in the cache, which outlives a test's database."""
    cache.clear()
    yield
    cache.clear()
