"""Production: Postgres, Redis, Celery workers, HTTPS in front. Refuses to start without SECRET_KEY or
TUMORSITE_PSEUDONYM_KEY."""

from django.core.exceptions import ImproperlyConfigured

from tumorsite.env import envbool, envint

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK, SECRET_KEY_FROM_ENV, STORAGES, TUMORSITE_PSEUDONYM_KEY_FROM_ENV

if not SECRET_KEY_FROM_ENV:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Production settings need a long random SECRET_KEY in the environment, e.g. "
        "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
SECRET_KEY = SECRET_KEY_FROM_ENV
# Patients' codes are only as secret as this key: hospital numbers are few enough to try them all.
if len(TUMORSITE_PSEUDONYM_KEY_FROM_ENV.strip()) < 32:
    raise ImproperlyConfigured(
        "TUMORSITE_PSEUDONYM_KEY is "
        + ("not set" if not TUMORSITE_PSEUDONYM_KEY_FROM_ENV else "shorter than 32 characters")
        + ". Production settings need a long random secret that stays the same for the life of the record "
        "(changing it gives every patient a new code), e.g. "
        "TUMORSITE_PSEUDONYM_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    )
TUMORSITE_PSEUDONYM_KEY = TUMORSITE_PSEUDONYM_KEY_FROM_ENV
DEBUG = False

# Media where base says (a folder, or an object store: TUMORSITE_S3_BUCKET).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}

# TLS terminates at the proxy in front of gunicorn.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
# Cookies only over HTTPS; the session cookie out of reach of page scripts (the CSRF one stays readable,
# Django's documented choice: hiding it protects nothing).
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REDIRECT_EXEMPT = [r"^healthz(/live|/ready)?$"]
# The proxy appends the client's address to X-Forwarded-For: the lock-out and the throttles count that one.
TUMORSITE_TRUSTED_PROXIES = envint("TUMORSITE_TRUSTED_PROXIES", 1)
REST_FRAMEWORK = {**REST_FRAMEWORK, "NUM_PROXIES": TUMORSITE_TRUSTED_PROXIES}
