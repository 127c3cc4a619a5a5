"""The Celery application.

Workers: ``celery -A tumorsite worker --pool=solo`` (TensorFlow is not fork-safe). Two queues
(``CELERY_TASK_ROUTES`` in tumorsite/settings/base.py): the segmentation runs on
``TUMORSITE_SEGMENTATION_QUEUE`` (``-Q segmentation``, the GPU workers), every other task on the default
one (``-Q celery``, a CPU worker); without ``-Q`` a worker consumes both (docs/operations.md, "Workers").
One worker runs with ``-B`` (the beat): it queues the sweep of ``CELERY_BEAT_SCHEDULE`` that sends again
the runs whose message was lost or whose worker died. More than one beat is harmless (a sweep sends only
what is overdue and a run is claimed once), merely wasteful; a separate ``celery -A tumorsite beat``
works too.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tumorsite.settings.base")

app = Celery("tumorsite")
# Settings named CELERY_* (task_acks_late, worker_prefetch_multiplier, the result backend...) live in
# tumorsite/settings/base.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
