import os

from django.core.wsgi import get_wsgi_application

from tumorsite.queue import start_periodic

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tumorsite.settings.base")

application = get_wsgi_application()

# Embedded mode: the in-process beat, which also sweeps up the runs a previous process left queued.
start_periodic()
