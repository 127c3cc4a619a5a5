"""Settings for pytest: the embedded defaults, unless DATABASE_URL / CELERY_BROKER_URL say otherwise."""

from .base import *  # noqa: F403
from .base import DATABASES, TUMORSITE_VAR_DIR

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = TUMORSITE_VAR_DIR / "test-media"
# The kNN type vote alone, so that tests on synthetic slices do not depend on the shipped classifier's
# opinion of them; the tests of the classifier turn one on (segmentation.testing.tiny_type_classifier).
TUMORSITE_TYPE_CLASSIFIER = ""
# No "brain MRI slice like the training ones" check: the synthetic slices of the tests are not; the tests
# of that check install a reference (tests/recommender/test_honest_results.py).
TUMORSITE_SLICE_REFERENCE = ""

# A fixed test database name, so a Celery worker started beforehand with
# DATABASE_URL=.../test_<name> works on the very database pytest creates (see .ci/run).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}"}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's default in-memory test database: with an in-memory database the live
    # server's request threads and the in-process worker share one connection, and two concurrent
    # uploads interleave their savepoints ("no such savepoint"). One file per pytest process.
    import os
    import tempfile

    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"tumorsite-test-{os.getpid()}.sqlite3")
    }

# No embedded beat sweeping the test database from a thread of its own between (and after) tests; the beat's
# own test turns it on (tests/test_settings_modes.py).
TUMORSITE_EMBEDDED_BEAT = False

# Tests never run collectstatic; without a STATIC_ROOT WhiteNoise serves through the finders only.
STATIC_ROOT = None

# The real lock-out and throttles, at rates no ordinary test reaches (the throttles' counts live in the
# cache, which outlives a test); tests/security sets them low and clears the cache.
TUMORSITE_TOKEN_RATE = "1000/minute"
TUMORSITE_UPLOAD_RATE = "1000/minute"
