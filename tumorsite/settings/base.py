"""Settings shared by every mode; the environment is read here and only here.

With no environment at all this is the embedded mode: SQLite under ``TUMORSITE_VAR_DIR`` and
Celery tasks run on an in-process background thread (see ``tumorsite.queue``). Setting
``DATABASE_URL=postgres://...`` and ``CELERY_BROKER_URL=redis://...`` runs the same code on
Postgres with real Celery workers.
"""

import hashlib
import re
from datetime import timedelta
from pathlib import Path

from tumorsite.env import EnvError, env, envbool, envfloat, envint, envlist, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# === Environment ===
SECRET_KEY_FROM_ENV = env("SECRET_KEY")
# The secret behind patients' pseudonyms (cases.pseudonyms); production refuses to start without it.
TUMORSITE_PSEUDONYM_KEY_FROM_ENV = env("TUMORSITE_PSEUDONYM_KEY")
DEBUG = envbool("DEBUG", True)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
DATABASE_URL = env("DATABASE_URL")
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
TUMORSITE_VAR_DIR = Path(env("TUMORSITE_VAR_DIR", str(BASE_DIR / "var"))).resolve()
TUMORSITE_DATA = Path(env("TUMORSITE_DATA", str(BASE_DIR.parent / "shared" / "data" / "figshare"))).resolve()
TUMORSITE_MODELS_DIR = Path(env("TUMORSITE_MODELS_DIR", str(BASE_DIR / "models"))).resolve()
TUMORSITE_MAX_UPLOAD_MB = envint("TUMORSITE_MAX_UPLOAD_MB", 50)
TUMORSITE_MAX_PIXELS = envint("TUMORSITE_MAX_PIXELS", 4096 * 4096)
# Frames of one multi-frame DICOM file (each becomes a case, segmented on its own); more are refused.
TUMORSITE_MAX_FRAMES = envint("TUMORSITE_MAX_FRAMES", 200)
# One DICOMweb STOW-RS request (clinic/api/dicomweb.py), all its instances together; each instance is
# also held to TUMORSITE_MAX_UPLOAD_MB.
TUMORSITE_DICOMWEB_MAX_MB = envint("TUMORSITE_DICOMWEB_MAX_MB", 500)
# The model whose mask is a case's primary mask (and whose finish triggers the case's description).
TUMORSITE_PRIMARY_MODEL = env("TUMORSITE_PRIMARY_MODEL", "ensemble")
# The segmenter whose bottleneck gives the recommender's learned embedding. U-Net++ was chosen by
# `tune_retrieval` (5-fold CV by patient group on the training + validation patients; docs/benchmarks.md,
# "Choosing the combined vector's weights and embedding model"). Empty = the primary model, or the
# ensemble's best member by validation Dice; a name that is not an active single model falls back to that,
# with a warning. Re-run `build_case_base` after a change.
TUMORSITE_EMBEDDING_MODEL = env("TUMORSITE_EMBEDDING_MODEL", "unet_plus_plus")
# The tumour-type classifier bundle (`manage.py train_type_classifier`); empty = the kNN vote alone. Its
# folder is not one that `sync_models` scans: it is not a segmenter.
TUMORSITE_TYPE_CLASSIFIER = env(
    "TUMORSITE_TYPE_CLASSIFIER", str(TUMORSITE_MODELS_DIR / "type_classifier" / "type_classifier.keras")
)
# The classifier's share w in the type suggestion p = (1 - w) * kNN vote + w * classifier, in [0, 1].
# Chosen on the validation split (`evaluate_retrieval --split val --classifier-weights ...`;
# docs/benchmarks.md).
TUMORSITE_TYPE_CLASSIFIER_WEIGHT = envfloat("TUMORSITE_TYPE_CLASSIFIER_WEIGHT", 0.75)
if not 0.0 <= TUMORSITE_TYPE_CLASSIFIER_WEIGHT <= 1.0:
    raise EnvError(
        f"TUMORSITE_TYPE_CLASSIFIER_WEIGHT={TUMORSITE_TYPE_CLASSIFIER_WEIGHT}: use a number in [0, 1]"
    )
# Similar-case search: "numpy" (exact) or "pgvector" (HNSW); empty = pgvector on PostgreSQL, else numpy.
TUMORSITE_VECTOR_INDEX = env("TUMORSITE_VECTOR_INDEX", "")
if TUMORSITE_VECTOR_INDEX not in ("", "numpy", "pgvector"):
    raise EnvError(f"TUMORSITE_VECTOR_INDEX={TUMORSITE_VECTOR_INDEX!r}: use numpy or pgvector")
# The segmenters' precision in the workers: "saved" (float32, as shipped: the published test-split figures),
# "fp32", "bf16" (mixed bfloat16: faster on CPUs with AMX or AVX512-BF16, slightly different maps) or "auto"
# (bf16 where the CPU or a GPU has bf16 units, else fp32). docs/benchmarks.md, "Upload to similar cases".
TUMORSITE_INFERENCE_PRECISION = env("TUMORSITE_INFERENCE_PRECISION", "saved")
if TUMORSITE_INFERENCE_PRECISION not in ("saved", "fp32", "bf16", "auto"):
    raise EnvError(
        f"TUMORSITE_INFERENCE_PRECISION={TUMORSITE_INFERENCE_PRECISION!r}: use saved, fp32, bf16 or auto"
    )
# What runs the segmenters in the workers: "openvino" (its CPU plugin: about twice TensorFlow's speed on a
# CPU, the same float32 maps), "tensorflow" (what a GPU worker needs), or "auto" (OpenVINO when it is
# installed and TensorFlow sees no GPU). docs/benchmarks.md, "Upload to similar cases".
TUMORSITE_INFERENCE_RUNTIME = env("TUMORSITE_INFERENCE_RUNTIME", "auto")
if TUMORSITE_INFERENCE_RUNTIME not in ("auto", "openvino", "tensorflow"):
    raise EnvError(
        f"TUMORSITE_INFERENCE_RUNTIME={TUMORSITE_INFERENCE_RUNTIME!r}: use auto, openvino or tensorflow"
    )
# Sign-in protection (docs/operations.md, "Sign-in protection"). After TUMORSITE_SIGNIN_FAILURE_LIMIT failed
# sign-ins (page or API token) from one address for one username, that pair is refused until
# TUMORSITE_SIGNIN_COOLOFF_MINUTES pass without another failure.
TUMORSITE_SIGNIN_FAILURE_LIMIT = envint("TUMORSITE_SIGNIN_FAILURE_LIMIT", 10)
TUMORSITE_SIGNIN_COOLOFF_MINUTES = envint("TUMORSITE_SIGNIN_COOLOFF_MINUTES", 30)
# An API token older than this is refused (401); the token endpoint then hands out a new one.
TUMORSITE_TOKEN_TTL_HOURS = envint("TUMORSITE_TOKEN_TTL_HOURS", 24)
for _name, _value in (
    ("TUMORSITE_SIGNIN_FAILURE_LIMIT", TUMORSITE_SIGNIN_FAILURE_LIMIT),
    ("TUMORSITE_SIGNIN_COOLOFF_MINUTES", TUMORSITE_SIGNIN_COOLOFF_MINUTES),
    ("TUMORSITE_TOKEN_TTL_HOURS", TUMORSITE_TOKEN_TTL_HOURS),
):
    if _value < 1:
        raise EnvError(f"{_name}={_value}: use a whole number of at least 1")
# DRF throttle rates ("<requests>/<second|minute|hour|day>"): token requests per client address, case
# uploads through the API per user.
TUMORSITE_TOKEN_RATE = env("TUMORSITE_TOKEN_RATE", "5/minute")
TUMORSITE_UPLOAD_RATE = env("TUMORSITE_UPLOAD_RATE", "60/hour")
for _name, _value in (
    ("TUMORSITE_TOKEN_RATE", TUMORSITE_TOKEN_RATE),
    ("TUMORSITE_UPLOAD_RATE", TUMORSITE_UPLOAD_RATE),
):
    if not re.fullmatch(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)", _value):
        raise EnvError(f"{_name}={_value!r}: use <requests>/<second|minute|hour|day>, e.g. 5/minute")
# How many proxies in front of the site append to X-Forwarded-For: the client's address for the audit
# trail, the lock-out and the throttles is read that many entries from the right (audit.addresses). 0 = the
# connection's own address (never a header a client could forge).
TUMORSITE_TRUSTED_PROXIES = envint("TUMORSITE_TRUSTED_PROXIES", 0)
if TUMORSITE_TRUSTED_PROXIES < 0:
    raise EnvError(
        f"TUMORSITE_TRUSTED_PROXIES={TUMORSITE_TRUSTED_PROXIES}: use 0 (no proxy) or the number of proxies"
    )
# Run by `manage.py demo_setup` (make demo) after the import, when they exist; apps may append theirs.
TUMORSITE_DEMO_SETUP_COMMANDS = ["sync_models", "build_case_base"]

# Only for the embedded mode and tests; production refuses to start without SECRET_KEY.
SECRET_KEY = SECRET_KEY_FROM_ENV or "django-insecure-embedded-mode-only-never-use-in-production-4f1c9e"
# Embedded mode without a key of its own: one derived from SECRET_KEY (so changing SECRET_KEY changes
# every new upload's patient code; docs/operations.md).
TUMORSITE_PSEUDONYM_KEY = (
    TUMORSITE_PSEUDONYM_KEY_FROM_ENV
    or hashlib.sha256(b"tumorsite-pseudonym-key\x00" + SECRET_KEY.encode()).hexdigest()
)

# === Applications ===
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    # Before auditlog: our `auditlogflush` (which refuses) overrides auditlog's, the first app's command
    # winning; audit.admin replaces auditlog's admin of the entries.
    "audit",
    "auditlog",
    "cases",
    "segmentation",
    "recommender",
    "clinic",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who and from which address, for every audit entry the request writes; then the case reads and
    # downloads the trail records (clinic.audit_access), whatever view answered.
    "audit.middleware.AuditMiddleware",
    "clinic.audit_access.AuditAccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the locked-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tumorsite.urls"
WSGI_APPLICATION = "tumorsite.wsgi.application"
ASGI_APPLICATION = "tumorsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# === Database ===
if DATABASE_URL:
    DATABASES = {"default": parse_database_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(TUMORSITE_VAR_DIR / "db.sqlite3")}
    }
    # SQLite creates the file but not its folder; the embedded mode should start on a fresh checkout.
    TUMORSITE_VAR_DIR.mkdir(parents=True, exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent uploads (8 files from the upload page, the in-process worker writing results) must queue
    # for SQLite's single write lock, never fail with "database is locked" (issue #31, item 1):
    # - WAL: readers never block the writer nor the writer them;
    # - BEGIN IMMEDIATE: a transaction takes the write lock when it starts, so two transactions that
    #   read then write cannot deadlock on upgrading their read locks (SQLite would fail one of them at
    #   once, busy timeout or not);
    # - timeout: how long a writer waits for the lock (seconds), far longer than any write transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# === Auth ===
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# django-axes first: it refuses a locked-out sign-in before any password is checked. Every sign-in must
# pass the request to authenticate() (Django's login view and DRF's token serializer do).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = TUMORSITE_SIGNIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=TUMORSITE_SIGNIN_COOLOFF_MINUTES)
# The pair, not the address alone (a hospital behind one NAT address would lock out all its staff at once)
# nor the username alone (anyone could lock any clinician out).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failed sign-in kept (who, when, address), not just the counts
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "audit.addresses.client_address"

# The audit trail: django-auditlog's entry with the event named (audit.models.AuditEntry). Entries are
# written explicitly, one per audited action (audit.services.audit_record), not for every model save.
AUDITLOG_LOGENTRY_MODEL = "audit.AuditEntry"
# django-auditlog's own migrations create its LogEntry table even when the model is swapped for ours (they
# predate its `swappable`): an unused table whose foreign keys to users and content types would stop
# Django's flush (TRUNCATE) of those tables. With no migrations for the app, the swapped model gets none.
MIGRATION_MODULES = {"auditlog": None}

# === I18n ===
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# === Files ===
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = TUMORSITE_VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Media in an S3-compatible object store (docs/operations.md, "Media in an object store"): with a bucket
# named, every process reads and writes media there through django-storages, so the web and the workers
# share no disk. The credentials are boto3's own: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
# AWS_SESSION_TOKEN), else its chain (a profile, an instance or task IAM role). Objects get no ACL (the
# bucket's own, private) and are never served from the bucket: the audited views stream them.
TUMORSITE_S3_BUCKET = env("TUMORSITE_S3_BUCKET")
TUMORSITE_S3_ENDPOINT_URL = env("TUMORSITE_S3_ENDPOINT_URL")  # empty = AWS itself
# An empty value (compose passes every variable through) means the default, as an unset one does.
TUMORSITE_S3_REGION = env("TUMORSITE_S3_REGION") or "us-east-1"
TUMORSITE_S3_PREFIX = env("TUMORSITE_S3_PREFIX").strip("/")  # the media's folder in the bucket
# "path" (bucket in the path) is what SeaweedFS, MinIO and most self-hosted stores expect.
TUMORSITE_S3_ADDRESSING_STYLE = env("TUMORSITE_S3_ADDRESSING_STYLE") or "path"
if TUMORSITE_S3_ADDRESSING_STYLE not in ("path", "virtual", "auto"):
    raise EnvError(
        f"TUMORSITE_S3_ADDRESSING_STYLE={TUMORSITE_S3_ADDRESSING_STYLE!r}: use path, virtual or auto"
    )
if TUMORSITE_S3_BUCKET:
    from botocore.config import Config as BotoConfig  # only a bucket needs botocore

    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": TUMORSITE_S3_BUCKET,
            "endpoint_url": TUMORSITE_S3_ENDPOINT_URL or None,
            "region_name": TUMORSITE_S3_REGION,
            "location": TUMORSITE_S3_PREFIX,
            # Bounded: a store that stops answering fails a request within seconds (a readiness probe, an
            # upload), instead of botocore's 60 s connect timeout with retries.
            "client_config": BotoConfig(
                s3={"addressing_style": TUMORSITE_S3_ADDRESSING_STYLE},
                signature_version="s3v4",
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
            "default_acl": None,
            "querystring_auth": True,  # an object's URL, should anything ask for one, is signed and expires
            # A new upload never replaces a stored file of the same name (rows name their files).
            "file_overwrite": False,
        },
    }
DATA_UPLOAD_MAX_MEMORY_SIZE = TUMORSITE_MAX_UPLOAD_MB * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# === REST API ===
REST_FRAMEWORK = {
    # Session first, so a request without credentials gets 403 (DRF answers 401 only when the first class
    # names a WWW-Authenticate scheme); an expired token still gets its 401 (clinic.api.authentication).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "clinic.api.authentication.ExpiringTokenAuthentication",
    ],
    # Each view names the permission each method needs (required_permissions); a method without one is
    # refused, so a new endpoint is closed until someone decides which role may use it.
    "DEFAULT_PERMISSION_CLASSES": ["clinic.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "clinic.api.pagination.Pagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every error body is RFC 9457 problem details (application/problem+json), shaped there only.
    "EXCEPTION_HANDLER": "clinic.api.errors.problem_exception_handler",
    "NUM_PROXIES": TUMORSITE_TRUSTED_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TumorSite API",
    "DESCRIPTION": "Brain-tumour MRI segmentation and similar-case retrieval. Every error is an "
    "RFC 9457 problem (application/problem+json); every list is paged with ?page and ?page_size.",
    "VERSION": "0.1.0",
    "OAS_VERSION": "3.1.0",  # JSON Schema proper: a nullable reference is unambiguous (not so in 3.0)
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies as the views read them (tests/api/test_schema_fuzz.py sends what the schema allows):
    # separate request components, so an upload is a file (format binary, not a URL) and a required
    # string may not be blank (minLength 1); and a PATCH body keeps its required fields, since no view
    # here applies a PATCH partially.
    "COMPONENT_SPLIT_REQUEST": True,
    "COMPONENT_SPLIT_PATCH": False,
    # clinic.api.urls' <id:...>: a row id of at most 18 digits.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
    # Swagger UI and Redoc from this site's static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# === Celery ===
# Without a broker, tumorsite.queue runs the same tasks in-process; Celery is never contacted.
CELERY_RESULT_BACKEND = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 24 * 3600
# Queues (docs/operations.md, "Workers"): a segmentation run goes to its own queue, for the workers with a
# GPU (the Dockerfile's worker-gpu stage, `-Q segmentation`); everything else (describing a case, the runs
# sweep, checksums) to the default queue, for a CPU worker. The sweep stays on the default queue: it only
# reads the database and sends messages, and it must run while the segmentation workers are busy or dead
# (its job is to notice those runs). The sweep sends runs again through the same route, so a re-sent run
# also lands on the segmentation queue. A worker started without -Q consumes both queues (one CPU host
# does everything). Embedded mode ignores all of this: tasks run in process.
TUMORSITE_SEGMENTATION_QUEUE = env("TUMORSITE_SEGMENTATION_QUEUE", "segmentation").strip()
CELERY_TASK_DEFAULT_QUEUE = env("TUMORSITE_DEFAULT_QUEUE", "celery").strip()
if not TUMORSITE_SEGMENTATION_QUEUE or not CELERY_TASK_DEFAULT_QUEUE:
    raise EnvError("TUMORSITE_SEGMENTATION_QUEUE and TUMORSITE_DEFAULT_QUEUE cannot be empty")
if TUMORSITE_SEGMENTATION_QUEUE == CELERY_TASK_DEFAULT_QUEUE:
    raise EnvError(
        f"TUMORSITE_SEGMENTATION_QUEUE and TUMORSITE_DEFAULT_QUEUE are both {CELERY_TASK_DEFAULT_QUEUE!r}: "
        "give the segmentation runs a queue of their own"
    )
# Each queue with an exchange of its name (Redis has no real exchanges; Celery's routing guide), as Celery
# would create it.
CELERY_TASK_QUEUES = {
    name: {"exchange": name, "routing_key": name}
    for name in (CELERY_TASK_DEFAULT_QUEUE, TUMORSITE_SEGMENTATION_QUEUE)
}
CELERY_TASK_ROUTES = {"segmentation.tasks.run_segmentation_task": {"queue": TUMORSITE_SEGMENTATION_QUEUE}}
# Sending never holds a request for long: with the broker down, a send gives up within seconds (2 s to
# connect, 2 quick retries) and the run waits in the database for the sweep below (docs/operations.md,
# "When the broker or a worker dies"). The result backend's own default retries (20 x 1 s) made an upload
# wait 19 s when Redis was down; the run task stores no result, and the rest retry briefly.
CELERY_BROKER_CONNECTION_TIMEOUT = envfloat("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = CELERY_BROKER_CONNECTION_TIMEOUT
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"max_retries": 2, "interval_step": 0.5}}
# Task time, measured on the 2-core AMD EPYC of docs/benchmarks.md: a warm run of the 3 models + the
# ensemble on one slice (flip and zoom TTA) takes about 1.5 s (issue #31: 40.6 slices a minute on 2 cores,
# 2.2 s from upload to the similar cases); a cold worker's first run loads TensorFlow and the bundles, a
# few seconds more. The limits leave two orders of magnitude for a large slice on a loaded machine.
# (The solo pool does not enforce them, so the claim deadline below is what frees a stuck run there.)
TUMORSITE_RUN_SOFT_TIME_LIMIT_S = envint("TUMORSITE_RUN_SOFT_TIME_LIMIT_S", 120)
TUMORSITE_RUN_TIME_LIMIT_S = envint("TUMORSITE_RUN_TIME_LIMIT_S", 180)
# A run "running" past this was claimed by a worker that died: the sweep sends it again and a worker
# claims it anew. Longer than the hard limit, so a live worker never loses its claim.
TUMORSITE_RUN_CLAIM_DEADLINE_S = envint("TUMORSITE_RUN_CLAIM_DEADLINE_S", 300)
# A run "queued" past this lost its message (e.g. the broker was down when it was created): sent again
# once the queue is empty, i.e. never while a backlog drains.
TUMORSITE_RUN_QUEUED_DEADLINE_S = envint("TUMORSITE_RUN_QUEUED_DEADLINE_S", 180)
# Claims of one run by workers that died before the run gives up with status failed (a slice that
# crashes the worker must not take every worker down in turn).
TUMORSITE_RUN_MAX_ATTEMPTS = envint("TUMORSITE_RUN_MAX_ATTEMPTS", 3)
# How often the sweep runs: the beat of `celery worker -B` in production, the background thread in the
# embedded mode (0 turns the embedded one off). Every worker also sweeps once when it starts.
TUMORSITE_RUNS_SWEEP_EVERY_S = envint("TUMORSITE_RUNS_SWEEP_EVERY_S", 60)
# A description asked for (after a review, a correction, a chosen type) and not done past this lost its
# message or its worker: the same sweep sends it again. Longer than the hard limit of the task.
TUMORSITE_DESCRIPTION_LOST_AFTER_S = envint("TUMORSITE_DESCRIPTION_LOST_AFTER_S", 300)
# The embedded mode's beat: a thread of the web process that queues CELERY_BEAT_SCHEDULE's tasks on the
# in-process queue (tumorsite.queue). Off in the tests' settings: a test that sweeps does so itself.
TUMORSITE_EMBEDDED_BEAT = True
CELERY_BEAT_SCHEDULE = (
    {
        "segmentation-runs-sweep": {
            "task": "segmentation.tasks.runs_sweep_task",
            "schedule": float(TUMORSITE_RUNS_SWEEP_EVERY_S),
        },
        "recommender-descriptions-sweep": {
            "task": "recommender.tasks.descriptions_sweep_task",
            "schedule": float(TUMORSITE_RUNS_SWEEP_EVERY_S),
        },
    }
    if TUMORSITE_RUNS_SWEEP_EVERY_S > 0
    else {}
)
# Redis gives an unacknowledged message (acks_late: its worker died) to another worker after this. Longer
# than the longest wait of a delivered message: a retry's countdown (300 s at most, segmentation.tasks)
# plus the hard time limit; shorter recoveries are the sweep's job. Redis' default was an hour.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT_S", 900),
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": 10,
}

# === Logging ===
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # pydicom's warnings quote header values (a patient's name, ID or birth date in a malformed upload);
    # the DICOM reader reports what matters in its own messages.
    "loggers": {"pydicom": {"level": "ERROR"}},
}
