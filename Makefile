# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean bench-simulate bench-score

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/autorisk demo

test: $(BIN)/.installed
	$(BIN)/pytest

bench-simulate: $(BIN)/.installed
	$(BIN)/python benchmarks/simulate.py

# Long: exact SHAP for four endpoints costs about a millisecond of CPU per patient (see the script).
bench-score: $(BIN)/.installed
	$(BIN)/python benchmarks/score.py

clean:
	rm -rf $(VENV) mlflow.db mlartifacts mlruns outputs .pytest_cache
