# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install lock lock-check check lint format-check typecheck check-pending team-store team-store-screenshot postgresql clean browser fhir-validator screenshots mlflow-screenshots bench-simulate bench-score bench-shap bench-serve bench-clinical bench-load wrk docs-tables

# Everything installs from requirements-dev.lock, every file checked against its sha256 (pip itself and the
# build backend included), then the project itself without dependencies: what was tested is what installs.
$(BIN)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed

# Recompile both lockfiles from pyproject.toml (tools/lock.py says how): keeps every pin that still fits.
# `make lock UPGRADE=xgboost` moves one package to its newest allowed version, `make lock UPGRADE=all` all.
lock: $(BIN)/.installed
	$(BIN)/python tools/lock.py compile $(if $(filter all,$(UPGRADE)),--upgrade-all,$(foreach p,$(UPGRADE),--upgrade $(p)))

# Fails when a lockfile is stale against pyproject.toml (CI runs it).
lock-check: $(BIN)/.installed
	$(BIN)/python tools/lock.py check

demo: $(BIN)/.installed
	$(BIN)/autorisk demo

# COVERAGE=1 (as make check does) measures the package's lines in the test process and in every Python
# process it starts (pytest-cov combines their data files at the end), and fails under the floor of
# pyproject.toml's [tool.coverage.report].
test: $(BIN)/.installed browser fhir-validator postgresql
ifeq ($(COVERAGE),1)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/pytest --cov --cov-report=
	COVERAGE_FILE=$(CURDIR)/.coverage $(BIN)/coverage report
else
	$(BIN)/pytest
endif

# What CI runs (.ci/run): the lock, lint, format, types, then the whole suite once, with its coverage floor.
# The findings that pyproject.toml's phase-1 blocks still allow are listed (check-pending) without failing.
check: lock-check lint format-check typecheck check-pending
	$(MAKE) test COVERAGE=1

lint: $(BIN)/.installed
	$(BIN)/ruff check .

# Every file outside the phase-1 list of pyproject.toml's [tool.ruff.format] is formatted (ruff format FILE).
format-check: $(BIN)/.installed
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

check-pending: $(BIN)/.installed
	$(BIN)/python tools/pending.py

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here) and turn the
# printed page into a picture with poppler's pdftoppm; installed as root, or through sudo when it needs no
# password. Without them those tests are skipped, saying why.
browser:
	@{ command -v chromium >/dev/null && command -v pdftoppm >/dev/null; } || { command -v apt-get >/dev/null \
		&& $(if $(filter 0,$(shell id -u)),,sudo -n) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils' >/dev/null; } \
		|| echo "chromium or poppler-utils could not be installed (Debian: apt-get install chromium poppler-utils); the browser tests will be skipped"

# The team store's database: Debian's postgresql (its server programs live in /usr/lib/postgresql/<version>/bin),
# installed as root or through sudo when it needs no password, like the browser. Without it the team-store
# test is skipped, saying why.
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { command -v apt-get >/dev/null \
		&& $(if $(filter 0,$(shell id -u)),,sudo -n) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql' >/dev/null; } \
		|| echo "postgresql could not be installed (Debian: apt-get install postgresql); the team-store test will be skipped"

# A team's MLflow store on this machine: a tracking server on PostgreSQL serving the artifacts, on 127.0.0.1
# (port TEAM_STORE_PORT), its data in .team-store/ (git-ignored, kept between starts). Ctrl-C stops it.
TEAM_STORE_PORT ?= 5000
team-store: $(BIN)/.installed postgresql
	$(BIN)/python tools/team_store.py --port $(TEAM_STORE_PORT)

# The picture of docs/team-store.md: the team-store test, keeping its screenshot of the run in the MLflow UI.
team-store-screenshot: $(BIN)/.installed browser postgresql
	AUTORISK_TEAM_STORE_SCREENSHOT_DIR=$(CURDIR)/docs/images $(BIN)/pytest tests/pipelines/test_team_store.py -k mlflow_ui

# The second FHIR validator of the tests, from another ecosystem: FHIR.js (npm "fhir", pinned by its lockfile),
# installed with the machine's Node.js and npm (Debian's nodejs and npm where they are missing).
FHIR_VALIDATOR := tools/fhir-validator
$(FHIR_VALIDATOR)/node_modules/.installed: $(FHIR_VALIDATOR)/package.json $(FHIR_VALIDATOR)/package-lock.json
	@command -v npm >/dev/null || { command -v apt-get >/dev/null \
		&& $(if $(filter 0,$(shell id -u)),,sudo -n) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm' >/dev/null; }
	npm ci --prefix $(FHIR_VALIDATOR) --no-audit --no-fund --silent
	touch $@

fhir-validator: $(FHIR_VALIDATOR)/node_modules/.installed

# The pictures of docs/page.md, from the champion of `make demo`.
screenshots: $(BIN)/.installed browser
	$(BIN)/python tools/page_screenshots.py

# Every benchmark's output is recorded in outputs/benchmarks/<name>.txt (tools/bench_record.py), which
# make docs-tables renders into the docs; BENCH_ARGS passes options to the benchmark (its --help says which).
bench-simulate: $(BIN)/.installed
	$(BIN)/python tools/bench_record.py simulate -- $(BIN)/python benchmarks/simulate.py $(BENCH_ARGS)

# autorisk score end to end (CSV and Parquet, 100,000 and 1,000,000 patients) against the trees'
# own margin, pred_contribs and shap, with a profile of each phase (about ten minutes).
bench-score: $(BIN)/.installed
	$(BIN)/python tools/bench_record.py score -- $(BIN)/python benchmarks/score.py $(BENCH_ARGS)

# The exact SHAP tables alone against pred_contribs, shap and the margin, for 1, 100 and 100,000 rows.
bench-shap: $(BIN)/.installed
	$(BIN)/python tools/bench_record.py shap -- $(BIN)/python benchmarks/treeshap.py $(BENCH_ARGS)

# The load generator for the REST benchmarks (Debian's wrk; as root, or through sudo).
wrk:
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y wrk; } \
		|| { echo "wrk is needed: install it with your package manager (Debian/Ubuntu: apt-get install wrk)"; exit 1; }

# REST: autorisk serve against mlflow models serve, 1 and 100 patients per request (about 10 minutes).
bench-serve: $(BIN)/.installed wrk
	$(BIN)/python tools/bench_record.py serve -- $(BIN)/python benchmarks/serve.py $(BENCH_ARGS)

# The clinical front doors' CPU per patient beside /predict's, in process (no servers, about a minute).
bench-clinical: $(BIN)/.installed
	$(BIN)/python tools/bench_record.py clinical -- $(BIN)/python benchmarks/serve.py --clinical-only $(BENCH_ARGS)

# REST: 60 seconds at 32 connections; fails on any error or memory growth over the bound.
bench-load: $(BIN)/.installed wrk
	$(BIN)/python tools/bench_record.py load -- $(BIN)/python benchmarks/serve.py --load $(BENCH_ARGS)

# The pictures of docs/mlflow-ui.md: the MLflow UI in headless Chromium, from the project's store, after
# training experiments/il21-value.yaml and experiments/il21-no-effect.yaml.
mlflow-screenshots: $(BIN)/.installed browser
	$(BIN)/python tools/mlflow_ui.py --out docs/images

# The docs' marked tables, rewritten from the runs and outputs they came from (after make demo).
docs-tables: $(BIN)/.installed
	$(BIN)/python tools/docs_tables.py

clean:
	rm -rf $(VENV) mlflow.db mlartifacts mlruns outputs .pytest_cache .coverage .coverage.* .mypy_cache .ruff_cache $(FHIR_VALIDATOR)/node_modules
