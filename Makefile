# TumorSite: `make demo` starts the embedded mode on http://127.0.0.1:8000, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SHARED_DATA := ../shared/data/figshare
DATA   ?= $(if $(wildcard $(SHARED_DATA)/cases.csv),$(SHARED_DATA),)
HOST   ?= 127.0.0.1:8000

.PHONY: install demo test bench check-compose clean

install: $(VENV)/.installed

# Re-runs pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# Embedded mode: SQLite and media under ./var, tasks on an in-process background thread.
demo: install
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py migrate --noinput
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py collectstatic --noinput -v0
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py demo_setup --data '$(DATA)'
	@echo "TumorSite is starting on http://$(HOST)/ (Ctrl-C stops it)"
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py runserver $(HOST)

# The whole suite on the embedded defaults (tests that need Postgres/Redis skip themselves here).
test: install
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m pytest

bench: install
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

check-compose: install
	SECRET_KEY=placeholder POSTGRES_PASSWORD=placeholder $(VENV)/bin/docker-compose -f docker-compose.yml config -q

clean:
	rm -rf var staticfiles .pytest_cache
