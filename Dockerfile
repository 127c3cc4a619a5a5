# Three images for docker-compose.yml, one stage each:
# - `web` (gunicorn) installs requirements/web.txt, which has no TensorFlow, Keras or matplotlib (a page never
#   runs a model: the workers describe and segment the cases);
# - `worker-gpu` (celery on the segmentation queue) installs requirements/gpu.txt: TensorFlow's GPU build,
#   `tensorflow[and-cuda]`, whose CUDA and cuDNN libraries come as NVIDIA's wheels from PyPI, so the base
#   image stays python:3.11-slim; the host needs only the NVIDIA driver and the NVIDIA Container Toolkit;
# - `worker` (celery on the default queue, and the beat) installs requirements/base.txt, the same versions
#   with tensorflow-cpu and OpenVINO, which runs the segmenters on a CPU (TUMORSITE_INFERENCE_RUNTIME). It
#   is the last stage, so a plain `docker build .` gives the image that can do
#   everything on a CPU (manage.py commands that train or evaluate included; without -Q its worker
#   consumes both queues).
# Each stage installs exactly its lock, every file checked against its hash; `make lock` writes the locks
# from pyproject.toml. docs/operations.md, "Workers", says which worker runs where.
FROM python:3.11-slim-bookworm AS runtime

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


FROM runtime AS web
# Dependencies first, so code changes do not reinstall them: exactly the lock, each file checked against
# its hash.
COPY requirements/web.txt requirements/web.txt
RUN pip install --require-hashes -r requirements/web.txt
COPY . .
# The shipped bundles go into /models in both images: whichever container first mounts the empty "models"
# volume fills it from its image (the web's readiness check hashes the weights files; it never loads them).
# A retrained bundle written there later survives a new image.
RUN pip install --no-deps --no-build-isolation -e . \
 && SECRET_KEY=collectstatic-only TUMORSITE_PSEUDONYM_KEY=collectstatic-only-not-a-real-key-0000000 python manage.py collectstatic --noinput \
 && cp -a models/. /models/ \
 && chown -R tumorsite /models
USER tumorsite
EXPOSE 8000
CMD ["gunicorn", "tumorsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]


FROM runtime AS worker-gpu
# The driver's libraries the NVIDIA Container Toolkit mounts: CUDA (compute) and nvidia-smi (utility), as
# NVIDIA's CUDA images set it.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY requirements/gpu.txt requirements/gpu.txt
RUN pip install --require-hashes -r requirements/gpu.txt
# The web stage's code, static files and models, so every image runs the same code.
COPY --from=web /app /app
COPY --from=web --chown=tumorsite /models /models
RUN pip install --no-deps --no-build-isolation -e .
USER tumorsite
# One solo process per GPU (TensorFlow is not fork-safe), on the segmentation queue only.
CMD ["celery", "-A", "tumorsite", "worker", "--pool=solo", "--concurrency=1", "--loglevel=INFO", "-Q", "segmentation"]


FROM runtime AS worker
COPY requirements/base.txt requirements/base.txt
RUN pip install --require-hashes -r requirements/base.txt
COPY --from=web /app /app
COPY --from=web --chown=tumorsite /models /models
RUN pip install --no-deps --no-build-isolation -e .
USER tumorsite
# Both queues: alone on a CPU-only host it does everything. docker-compose.yml gives it the default queue
# and the beat (-B) when a worker-gpu takes the segmentation queue.
CMD ["celery", "-A", "tumorsite", "worker", "--pool=solo", "--concurrency=1", "--loglevel=INFO"]
