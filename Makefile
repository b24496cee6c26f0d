# Two commands matter: `make run` and `make test`. Everything else is a step they call.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.DEFAULT_GOAL := help
.PHONY: help install index run test lint bench clean

help:  ## show this help
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned packages (quick when nothing changed)

index: install  ## index corpus/ into index/ (incremental: only what changed is embedded)
	$(VENV)/bin/rag ingest

run: index  ## set up, index the corpus, then answer a sample question
	$(VENV)/bin/rag search "When was the Ottawa Convention signed?" -k 3

test: install  ## run every test CI runs
	$(PY) -m pytest

lint:  ## ruff
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:  ## remove the generated index (not the venv)
	rm -rf index
