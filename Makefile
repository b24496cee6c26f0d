# Two commands matter: `make run` and `make test`. Everything else is a step they call.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.DEFAULT_GOAL := help
.PHONY: help install index run ask test test-fast lint bench eval clean

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m rag.llm.model_file
	$(PY) -m compileall -q rag ui evals >/dev/null  # the sandbox sets PYTHONDONTWRITEBYTECODE: a cold `rag search` compiled ours every time
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned packages (quick when nothing changed)

index: install  ## index corpus/ into index/ (incremental: only what changed is embedded)
	$(VENV)/bin/rag ingest

run: index  ## set up, index the corpus, then start the chat at http://127.0.0.1:7860
	$(VENV)/bin/rag serve

ask: index  ## answer one sample question from the command line
	$(VENV)/bin/rag ask "When was the Ottawa Convention signed?"

AXE := tests/a11y/node_modules/axe-core/axe.min.js
$(AXE): tests/a11y/package.json tests/a11y/package-lock.json
	npm ci --prefix tests/a11y --no-audit --no-fund --silent
	touch $(AXE)

test: install $(AXE)  ## run every test CI runs (20-30 min on 2 cores)
	$(PY) -m pytest

# The markers are registered in pyproject.toml; `heavy`: no LLM but 4 s or more each (child processes, timed runs).
FAST := not slow and not heavy and not browser and not server and not postgres
test-fast: install  ## the fast tier: no language model, browser, Chroma or PostgreSQL server, nothing heavy
	$(PY) -m pytest -q -m "$(FAST)"

eval: install  ## the gold suite and the Python-docs suite on their test splits, beside the plain LangChain recipe
	@[ -d /usr/share/doc/python3.11/html/tutorial ] || { echo "install Debian's python3.11-doc first (apt-get install python3.11-doc)"; exit 2; }
	$(VENV)/bin/rag ingest
	$(VENV)/bin/rag eval --split test --baseline
	$(VENV)/bin/rag eval --suite evals/suites/pydocs.jsonl --corpus evals/corpora/pydocs.json --split test --baseline

bench:  ## benchmark every stage at the real, 1k and 10k scales against a plain LangChain baseline
	$(PY) -m evals.bench

lint:  ## ruff
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:  ## remove the generated index (not the venv)
	rm -rf index
