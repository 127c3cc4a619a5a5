# One image for the web (gunicorn) and worker (celery) services of docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=tumorsite.settings.production \
    TUMORSITE_VAR_DIR=/var/lib/tumorsite \
    TUMORSITE_MODELS_DIR=/models

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 1000 tumorsite \
 && mkdir -p /var/lib/tumorsite/media /models \
 && chown -R tumorsite /var/lib/tumorsite /models

WORKDIR /app
# Dependencies first, so code changes do not reinstall them: exactly the runtime lock, each file checked
# against its hash (`make lock` writes requirements/base.txt from pyproject.toml).
COPY requirements/base.txt requirements/base.txt
RUN pip install --require-hashes -r requirements/base.txt
COPY . .
# The shipped bundles go into /models, so the "models" volume starts with them (Docker fills an empty
# named volume from the image); a retrained bundle written there later survives a new image.
RUN pip install --no-deps --no-build-isolation -e . \
 && SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && cp -a models/. /models/ \
 && chown -R tumorsite /models

USER tumorsite
EXPOSE 8000
CMD ["gunicorn", "tumorsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
