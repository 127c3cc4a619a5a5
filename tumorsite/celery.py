"""The Celery application.

Workers: ``celery -A tumorsite worker --pool=solo`` (TensorFlow is not fork-safe).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tumorsite.settings.base")

app = Celery("tumorsite")
# Settings named CELERY_* (task_acks_late, worker_prefetch_multiplier, the result backend...) live in
# tumorsite/settings/base.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
