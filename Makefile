# TumorSite: `make demo` starts the embedded mode on http://127.0.0.1:8000, `make test` runs the suite
# with coverage, `make lint` runs ruff and the import contracts, `make lock` re-locks the dependencies.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SHARED_DATA := ../shared/data/figshare
DATA   ?= $(if $(wildcard $(SHARED_DATA)/cases.csv),$(SHARED_DATA),)
HOST   ?= 127.0.0.1:8000

.PHONY: install lock check-lock lint demo test bench docs rescore cv-collect cv-misses cv-regions cv-classifiers cv-type-classifiers cv-ensemble cv-calibration cv-type-vote check-compose clean help

install: $(VENV)/.installed

# Exactly the locked versions, every file checked against its hash, then the project itself without
# dependencies. Re-runs when the dev lock changes (`make lock` after editing pyproject's dependencies)
# or pyproject.toml does (a new top-level package needs the editable install redone).
$(VENV)/.installed: requirements/dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# Re-locks after a change to pyproject's dependencies, with hashes, for Python 3.11 on Linux x86_64:
# requirements/base.txt (the worker image: the dependencies and the ml extra, TensorFlow included),
# requirements/web.txt (the web image: the dependencies alone, at base's versions) and requirements/dev.txt
# (base, same versions, plus the dev extra). web.txt also pins the build backend (setuptools) that the image's
# `pip install --no-build-isolation -e .` uses; base.txt has it through TensorFlow. Pins already in the locks are kept; `make lock UPGRADE=1` moves
# every pin to the newest allowed.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--strip-extras --allow-unsafe --no-emit-options $(if $(UPGRADE),--upgrade)
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/pip-compile || $(PY) -m pip install --quiet pip-tools
	$(PIP_COMPILE) --extra ml -o requirements/base.txt pyproject.toml
	$(PIP_COMPILE) --build-deps-for editable -c requirements/base.txt -o requirements/web.txt pyproject.toml
	$(PIP_COMPILE) --extra ml --extra dev -c requirements/base.txt -o requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) --extra gpu --build-deps-for editable -c requirements/web.txt -o requirements/gpu.txt pyproject.toml
	$(PYTHON) requirements/digest.py --stamp

# Fails when pyproject's dependencies changed since the locks were compiled.
check-lock:
	$(PYTHON) requirements/digest.py --check

# What CI checks before the tests: ruff's rules and format on the whole tree, the import contracts of
# .importlinter (which layer may import which), and the locks against pyproject.
lint: install check-lock
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@# The models and the migrations agree (a hand-edited migration or a forgotten makemigrations fails).
	@var=$$(mktemp -d) && trap 'rm -rf "$$var"' EXIT && env -u DATABASE_URL -u CELERY_BROKER_URL \
	  TUMORSITE_VAR_DIR="$$var" $(PY) manage.py makemigrations --check --dry-run

# Embedded mode: SQLite and media under ./var, tasks on an in-process background thread.
# demo_setup makes one account per role (demo-viewer, demo-clinician, demo-reviewer, demo-admin) and
# prints their passwords; run again, it keeps them (`manage.py demo_setup --reset-passwords` for new ones).
demo: install
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py migrate --noinput
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py collectstatic --noinput -v0
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py demo_setup --data '$(DATA)'
	@echo "TumorSite is starting on http://$(HOST)/ (Ctrl-C stops it)"
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py runserver $(HOST)

# The whole suite on the embedded defaults (tests that need Postgres/Redis skip themselves here), with
# the coverage of the code (lines not run, per file) and its floor, fail_under in pyproject.toml. It runs in
# TEST_WORKERS processes (pytest-xdist; each loads TensorFlow, 1-3 GB): 2 for this project's 2-core machines,
# TEST_WORKERS=auto for one per core. A worker that finishes its share takes tests from the other's
# (worksteal), so the longest tests (the shipped models' test-split reproduction) do not leave one waiting.
TEST_WORKERS ?= 2
test: install
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal \
	  --cov --cov-report=term-missing:skip-covered

bench: install
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# Every page that carries figures, from models/*.json, docs/results/*.json and docs/results/releases/*.json
# (each release's JSONs as it committed them): docs/models.md, docs/benchmarks.md, README.md's headline block,
# and the <!-- generated:NAME --> blocks of docs/notebook.md, docs/training.md, docs/model-history.md and
# CHANGELOG.md (tests/test_docs.py fails while one is stale). When a release ships, add it to RELEASES (and
# RETRIEVALS, AGREEMENTS) in docs/build.py and save its JSONs (test, retrieval, agreement, models/*.json) under
# docs/results/releases/ first, as CONTRIBUTING.md says.
docs: install
	$(PY) -m docs.build

# After a bundle in models/ changes: re-derive every published figure, in this order.
# Recalibrate (validation), re-choose the agreement level (validation), then score the test split once,
# time the models, and re-score the recommender in a throwaway embedded instance (./var is not touched).
# 20–30 min on 2 cores with AVX512-BF16 (30 for release 9, 20 for release 10). Then `make docs` regenerates
# the model cards, the benchmarks and the README's headline figures from the JSON files it writes.
rescore: install
	@test -f '$(DATA)/cases.csv' || { echo "rescore: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	$(PY) -m ml.calibrate --data '$(DATA)' --models-dir models
	$(PY) -m ml.agreement --data '$(DATA)' --models-dir models --split val --write --json docs/results/agreement_val.json
	$(PY) -m ml.agreement --data '$(DATA)' --models-dir models --split test --json docs/results/agreement_test.json
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py evaluate_segmentation --data '$(DATA)' --split test --runtime openvino --json docs/results/segmentation_test.json
	$(PY) benchmarks/segmentation.py --json docs/results/benchmark_segmentation.json
	@var=$$(mktemp -d) && trap 'rm -rf "$$var"' EXIT && set -e && \
	  echo "rescore: retrieval in a throwaway instance ($$var)" && \
	  unset DATABASE_URL CELERY_BROKER_URL && export TUMORSITE_VAR_DIR="$$var" && \
	  $(PY) manage.py migrate --noinput -v0 && \
	  $(PY) manage.py import_cases '$(DATA)' && \
	  $(PY) manage.py sync_models && \
	  $(PY) manage.py build_case_base && \
	  TUMORSITE_PRIMARY_MODEL=ensemble $(PY) manage.py evaluate_retrieval \
	    --data '$(DATA)' --split test --classifier-weights 0 1 --json docs/results/retrieval_test.json

# The fold bundles of the shipped U-Net recipe; other recipes' folds may sit beside them in models/cv.
SHIPPED_FOLDS = $(sort $(wildcard models/cv/unet_cv[0-9].keras))

# A finished fold run of ml.train (--output-dir runs/cv --run-dir runs/cv/<name>) into models/cv/: its bundle,
# its per-epoch log as <name>.log.csv and, for a --type-head run, its type branch into models/cv/type_classifier/.
cv-collect:
	@test -n '$(RUN)' && test -f 'runs/cv/$(RUN).keras' && test -f 'runs/cv/$(RUN)/log.csv' || { echo "cv-collect: RUN=<name> of a finished run is required (runs/cv/<name>.keras and runs/cv/<name>/log.csv)"; exit 2; }
	cp runs/cv/$(RUN).keras runs/cv/$(RUN).json models/cv/
	cp runs/cv/$(RUN)/log.csv models/cv/$(RUN).log.csv
	@if [ -f runs/cv/type_classifier/$(RUN)_type_head.keras ]; then mkdir -p models/cv/type_classifier && \
	  cp -v runs/cv/type_classifier/$(RUN)_type_head.keras runs/cv/type_classifier/$(RUN)_type_head.json models/cv/type_classifier/; fi

# Each cross-validation bundle on its own fold's validation patients, with its clean-up and with every region
# kept: Dice and the missed slices (empty, elsewhere, grazing), tabulated in docs/training.md. Bundles already
# scored are skipped; FORCE=1 scores them all again.
cv-misses: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-misses: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	@mkdir -p docs/results/cv
	@set -e; for bundle in models/cv/*.keras; do name=$$(basename $$bundle .keras); \
	  for cleanup in model none; do \
	    out=docs/results/cv/$${name}_val_cleanup_$$cleanup.json; \
	    if [ -f $$out ] && [ -z '$(FORCE)' ]; then echo "$$out: scored already (FORCE=1 to redo)"; continue; fi; \
	    env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py evaluate_segmentation --data '$(DATA)' \
	      --models-dir models/cv --models $$name --split val --runtime openvino --cleanup $$cleanup \
	      --json $$out; \
	  done; done

# Each fold bundle's Dice with the settings (flip and zoom TTA, threshold, clean-up) chosen on its own fold,
# as its calibration did, and with those chosen on the other folds' out-of-fold maps.
cv-calibration: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-calibration: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	@set -e; members=$$(mktemp -d); trap 'rm -rf "$$members"' EXIT; \
	  for f in $(SHIPPED_FOLDS) $(SHIPPED_FOLDS:.keras=.json); do ln -s "$$PWD/$$f" "$$members/"; done; \
	  $(PY) -m ml.calibrate --data '$(DATA)' --models-dir "$$members" --nested-folds \
	    --json docs/results/cv/calibration_nested.json

# The type suggestion by cross-validation, each fold's queries outlined, embedded and typed by the fold models
# that held it out (the shipped recipe's U-Nets and the fold classifiers): docs/training.md, "cv-type-vote".
# CLASSIFIERS=_w blends the class-balanced fold classifiers (make cv-classifiers TYPE_WEIGHT=...) instead,
# into type_vote_by_fold_w.json; CLASSIFIERS=_r those that read the tumour's outline (make cv-classifiers
# REGION=1), each given its query's outline from the fold U-Net, into type_vote_by_fold_r.json. The described
# slices are cached once for all; the U-Nets' maps for the outlines come from (and go to) cv-regions' cache.
CLASSIFIERS ?=
CV_CLASSIFIERS = $(sort $(wildcard models/cv/type_classifier/type_classifier_cv[0-9]$(CLASSIFIERS).keras))
cv-type-vote: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-type-vote: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	@test $(words $(CV_CLASSIFIERS)) -eq 5 || { echo "cv-type-vote: needs 5 fold classifiers models/cv/type_classifier/type_classifier_cv0..4$(CLASSIFIERS).keras ($(words $(CV_CLASSIFIERS)) there)"; exit 2; }
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py tune_retrieval --data '$(DATA)' \
	  --json docs/results/cv/type_vote_by_fold$(CLASSIFIERS).json --w-embedding 0 0.6 --fold-models $(SHIPPED_FOLDS) \
	  --classifier-folds $(CV_CLASSIFIERS) --cache var/tune_retrieval_by_fold.npz

# Each set of five fold classifiers alone on its folds' validation patients; one that reads the tumour's
# outline (REGION=1 above) with the fold U-Net's outline, the expert's and none: docs/training.md,
# "cv-type-alone". The U-Nets' maps come from (and go to) cv-regions' cache.
cv-type-classifiers: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-type-classifiers: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m ml.type_cv --data '$(DATA)' --models-dir models/cv \
	  --json docs/results/cv/type_classifiers_by_fold.json

cv-regions: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-regions: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m ml.region_choice --data '$(DATA)' --models-dir models/cv \
	  --bundles $(notdir $(basename $(SHIPPED_FOLDS))) --json docs/results/cv/region_choice.json

# The fold U-Nets as one ensemble, as nnU-Net serves its folds: the mean of their maps, each with its own
# test-time augmentation; the threshold the mean of theirs and the clean-up the majority's, since no patient
# is held out from all five to calibrate on. Scored once, on the test split none of them trained on.
cv-ensemble: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-ensemble: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	@test $(words $(SHIPPED_FOLDS)) -eq 5 || { echo "cv-ensemble: needs the 5 fold U-Nets models/cv/unet_cv0..4 ($(words $(SHIPPED_FOLDS)) there)"; exit 2; }
	@set -e; members=$$(mktemp -d); trap 'rm -rf "$$members"' EXIT; \
	  for f in $(SHIPPED_FOLDS) $(SHIPPED_FOLDS:.keras=.json); do ln -s "$$PWD/$$f" "$$members/"; done; \
	  env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) manage.py evaluate_segmentation --data '$(DATA)' \
	    --models-dir "$$members" --models ensemble --split test --runtime openvino \
	    --json docs/results/cv/fold_ensemble_test.json

# One type classifier per fold, seeded from that fold's U-Net (models/cv/unet_cv<K>.keras), for each fold
# that has one and no classifier yet: trained in runs/type_cv/ (resumable), kept in models/cv/type_classifier/
# with its per-epoch log. TYPE_WEIGHT=meningioma=2 trains the class-balanced variant (name suffix _w),
# REGION=1 the one that also looks at the tumour's outline (--tumour-region, name suffix _r); INIT_SEED=N the
# same recipe again from another initialisation on the same patients (--init-seed N, name suffix _sN), to
# measure how much two trainings differ. FOLD=K trains fold K only; PRECISION=fp32|bf16 overrides the CPU's
# choice (a second training compares with the first only in the first one's precision).
cv-classifiers: install
	@test -f '$(DATA)/cases.csv' || { echo "cv-classifiers: DATA=<folder in the shared layout> is required (no cases.csv in '$(DATA)')"; exit 2; }
	@mkdir -p models/cv/type_classifier
	@for seg in $(if $(FOLD),models/cv/unet_cv$(FOLD).keras,models/cv/unet_cv?.keras); do \
	  test -f $$seg || { echo "cv-classifiers: no fold U-Net $$seg"; exit 2; }; \
	  k=$${seg#models/cv/unet_cv}; k=$${k%.keras}; \
	  name=type_classifier_cv$${k}$(if $(TYPE_WEIGHT),_w)$(if $(REGION),_r)$(if $(INIT_SEED),_s$(INIT_SEED)); \
	  test -f models/cv/type_classifier/$$name.keras && continue; \
	  echo "== $$name (fold $$k, seeded from $$seg)"; \
	  env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m ml.type_classification --data '$(DATA)' --fold $$k \
	    --init-from $$seg --name $$name --output-dir runs/type_cv --run-dir runs/type_cv/$$name \
	    $(if $(TYPE_WEIGHT),--type-weight $(TYPE_WEIGHT)) $(if $(REGION),--tumour-region) \
	    $(if $(INIT_SEED),--init-seed $(INIT_SEED)) $(if $(PRECISION),--precision $(PRECISION)) || exit 1; \
	  cp runs/type_cv/$$name.keras runs/type_cv/$$name.json models/cv/type_classifier/ && \
	  cp runs/type_cv/$$name/log.csv models/cv/type_classifier/$$name.log.csv || exit 1; \
	done

check-compose: install
	SECRET_KEY=placeholder POSTGRES_PASSWORD=placeholder $(VENV)/bin/docker-compose -f docker-compose.yml config -q

clean:
	rm -rf var staticfiles .pytest_cache .coverage htmlcov

help:
	@echo "make install      .venv with exactly requirements/dev.txt (hash-checked), then the project (-e)"
	@echo "make lock         re-lock requirements/{base,web,dev}.txt after editing pyproject's dependencies"
	@echo "                  (UPGRADE=1: newest allowed versions); CI fails while a lock is stale"
	@echo "make lint         ruff check, ruff format --check, lint-imports, the locks against pyproject"
	@echo "make test         the suite in the embedded mode, with coverage and its floor"
	@echo "make demo         the embedded mode on http://$(HOST)/"
	@echo "make bench        the benchmarks; make rescore: re-derive the published figures (DATA=...)"
	@echo "make cv-collect   a finished fold run (RUN=<name>, trained into runs/cv) into models/cv with its log"
	@echo "make cv-misses    each cross-validation bundle on its fold's validation: Dice and misses (DATA=...;"
	@echo "                  bundles scored already are skipped, FORCE=1 redoes them)"
	@echo "make cv-regions   rules choosing one region of the map, by cross-validation over models/cv (DATA=...)"
	@echo "make cv-classifiers  a type classifier per fold with a U-Net in models/cv (DATA=..., TYPE_WEIGHT=...,"
	@echo "                  REGION=1: one that also reads the tumour's outline, INIT_SEED=N: the plain one"
	@echo "                  again from another initialisation; FOLD=K: that fold only, PRECISION=fp32|bf16)"
	@echo "make cv-type-classifiers  each set of fold classifiers alone on its folds (DATA=...)"
	@echo "make cv-ensemble  the 5 fold U-Nets as one ensemble, scored once on the test split (DATA=...)"
	@echo "make cv-calibration  each fold's Dice with the settings chosen on the other folds (DATA=...)"
	@echo "make cv-type-vote the type suggestion by CV, each fold typed by models that never saw it (DATA=...;"
	@echo "                  CLASSIFIERS=_w: the class-balanced fold classifiers, _r: those reading the outline)"
	@echo "make check-compose  docker-compose.yml is valid; make clean: remove var, static and test output"
