# Rapport developer entry points. Needs Python 3.11+, a JDK 17+ and Maven
# (Maven only once, to fetch the Kafka broker's jars into .rapport/cache).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Written after a successful install; pyproject.toml being newer triggers a reinstall.
STAMP := $(VENV)/.installed
DATA_DIR ?= .rapport/data
# Only folders that hold Python files: mypy refuses an empty folder.
CODE_DIRS := $(foreach dir,shared services devstack ops simulator tests bench,$(if $(wildcard $(dir)/*.py $(dir)/*/*.py),$(dir)))
PIP := $(BIN)/python -m pip --disable-pip-version-check
# SecantusDB's Rust server (crates.io secantus-mdb), an optional faster dev store than the
# Python one: built once with cargo into .tools/bin (5-12 minutes; rebuilt only when
# SECANTUS_RS_VERSION changes). RAPPORT_DEV_STORE=rust makes make up, demo, test and bench
# build it and use it (devstack/mongo.py); without it they use secantusd-py.
SECANTUS_RS_VERSION := 0.5.3-beta.196
SECANTUSD_RS := $(CURDIR)/.tools/bin/secantusd-rs
ifeq ($(RAPPORT_DEV_STORE),rust)
DEV_STORE_BUILD := secantusd-rs
endif

.PHONY: help install up demo test check lint typecheck fmt schemas bench fuzz replay kafka-jars browser clean clean-data

help:
	@echo "make up          run the whole stack locally (Kafka, SecantusDB, SMTP sink, 4 services)"
	@echo "make demo        run the whole stack and feed it synthetic customers (see the dashboard)"
	@echo "make test        lint, type-check, import contracts, then the test suite"
	@echo "make lint        ruff check + ruff format --check + mypy --strict + lint-imports"
	@echo "make helm-check  lint, render and schema-check the Helm chart (deploy/helm/rapport)"
	@echo "make fmt         format and auto-fix with ruff"
	@echo "make schemas     regenerate the events' JSON schemas"
	@echo "make bench       run the benchmarks in bench/"
	@echo "make secantusd-rs  build SecantusDB's Rust server (then RAPPORT_DEV_STORE=rust make ...)"
	@echo "make fuzz        schemathesis at length on every service's API (FUZZ_EXAMPLES=100)"
	@echo "make replay      rebuild the analytics figures from the topics and compare with live"
	@echo "make clean-data  delete the local stack's data ($(DATA_DIR))"
	@echo "make clean       delete the virtualenv and tool caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

# Fetching the broker up front gives a clear error when Maven is missing.
kafka-jars: $(STAMP)
	$(BIN)/python -m devstack.kafka fetch

up: $(STAMP) $(DEV_STORE_BUILD)
	$(BIN)/rapport up

demo: $(STAMP) $(DEV_STORE_BUILD)
	$(BIN)/rapport demo

.PHONY: secantusd-rs
secantusd-rs:
	@$(SECANTUSD_RS) --version 2>/dev/null | grep -qx 'secantusd-rs $(SECANTUS_RS_VERSION)' || { \
	  echo "building secantusd-rs $(SECANTUS_RS_VERSION) from crates.io (once; 5-12 minutes)"; \
	  cargo install --quiet secantus-mdb@$(SECANTUS_RS_VERSION) --ignore-rust-version \
	    --root $(CURDIR)/.tools; }

# The dashboard test drives Debian's chromium headless; install it when missing
# (as root through apt-get, the only way to get a browser on a machine without a
# download-anything network). RAPPORT_CHROMIUM points at another binary.
browser:
	@command -v $${RAPPORT_CHROMIUM:-chromium} >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the dashboard test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: install it (apt-get install chromium) or set RAPPORT_CHROMIUM" >&2; exit 1; \
	  fi; }

test: lint kafka-jars browser helm-check $(DEV_STORE_BUILD)
	$(BIN)/python -m pytest

check: test

# The Helm chart: Helm from the Go module proxy at a pinned version, built once into
# .tools/bin (a few minutes; rebuilt only when HELM_VERSION changes), then
# deploy/helm/check.sh lints, renders and schema-checks it with each example values file.
HELM_VERSION := v4.3.2
HELM := $(CURDIR)/.tools/bin/helm
.PHONY: helm-check
helm-check: $(STAMP)
	@go version -m $(HELM) 2>/dev/null | grep -Eq '^\s+mod\s+helm\.sh/helm/v4\s+$(HELM_VERSION)\s' || { \
	  echo "building helm $(HELM_VERSION) from the Go module proxy (once; a few minutes)"; \
	  GOBIN=$(CURDIR)/.tools/bin go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); }
	HELM=$(HELM) KUBERNETES_VALIDATE=$(BIN)/kubernetes-validate KUBERNETES_VERSION=1.33.0 \
	  deploy/helm/check.sh

lint: $(STAMP)
	$(BIN)/ruff check $(CODE_DIRS)
	$(BIN)/ruff format --check $(CODE_DIRS)
	$(BIN)/mypy $(CODE_DIRS)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy $(CODE_DIRS)

fmt: $(STAMP)
	$(BIN)/ruff check --fix $(CODE_DIRS)
	$(BIN)/ruff format $(CODE_DIRS)

schemas: $(STAMP)
	$(BIN)/python -m shared.events.schemas

# Starts its own broker and store unless RAPPORT_KAFKA_BOOTSTRAP / RAPPORT_MONGODB_URI are set.
bench: $(STAMP) $(DEV_STORE_BUILD)
	$(BIN)/python -m bench

# Schemathesis at length on every service (CI runs a short pass): no request may get a 5xx.
FUZZ_EXAMPLES ?= 100
fuzz: kafka-jars
	RAPPORT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py --timeout 3600

# Reads the local stack's settings (RAPPORT_*) like the services do.
replay: $(STAMP)
	$(BIN)/rapport replay

clean-data:
	@if [ -f "$(DATA_DIR)/up.lock" ] && kill -0 "$$(cat "$(DATA_DIR)/up.lock")" 2>/dev/null; then \
		echo "make up is running on $(DATA_DIR) (pid $$(cat "$(DATA_DIR)/up.lock")); stop it first"; \
		exit 1; \
	fi
	rm -rf "$(DATA_DIR)"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache *.egg-info
