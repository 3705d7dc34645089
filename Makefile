# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean browser fhir-validator screenshots mlflow-screenshots bench-simulate bench-score bench-shap bench-serve bench-clinical bench-load wrk docs-tables

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/autorisk demo

test: $(BIN)/.installed browser fhir-validator
	$(BIN)/pytest

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here) and turn the
# printed page into a picture with poppler's pdftoppm; installed as root, or through sudo when it needs no
# password. Without them those tests are skipped, saying why.
browser:
	@{ command -v chromium >/dev/null && command -v pdftoppm >/dev/null; } || { command -v apt-get >/dev/null \
		&& $(if $(filter 0,$(shell id -u)),,sudo -n) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils' >/dev/null; } \
		|| echo "chromium or poppler-utils could not be installed (Debian: apt-get install chromium poppler-utils); the browser tests will be skipped"

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
	rm -rf $(VENV) mlflow.db mlartifacts mlruns outputs .pytest_cache $(FHIR_VALIDATOR)/node_modules
