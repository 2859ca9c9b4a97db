# Everyday commands. `make bench` and `make test` work on a fresh Debian machine:
# they create .venv, install the package, and install the cache servers with
# apt-get when run as root and they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BENCH  := $(BIN)/bench
SERVER_PACKAGES := memcached redis-server redis-tools nutcracker
TEST_PACKAGES   := libhdrhistogram-java default-jre-headless chromium

SCENARIO ?= mediawiki
DURATION ?= 30s
RATE     ?=
TARGET   ?=
RUN_ARGS := $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) $(if $(TARGET),--target $(TARGET))

.PHONY: help install servers test-deps bench test perf regress cluster-up cluster-down clean

help:
	@echo "make bench   install, start a local cache cluster, run SCENARIO=$(SCENARIO), report, stop"
	@echo "             overrides: SCENARIO= DURATION= RATE= TARGET= (TARGET skips the local cluster)"
	@echo "make test    the whole test suite against real servers started by the tests"
	@echo "make perf    harness self-benchmarks (ratios against plain loops)"
	@echo "make regress smoke run + compare against results/baselines/smoke"

$(BIN)/bench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/bench

servers:
	@sh scripts/ensure-packages.sh $(SERVER_PACKAGES)

test-deps:
	@sh scripts/ensure-packages.sh $(SERVER_PACKAGES) $(TEST_PACKAGES)

bench: install servers
	@if [ -n "$(TARGET)" ]; then \
		$(BENCH) run $(SCENARIO) $(RUN_ARGS); \
	else \
		$(BENCH) cluster up && \
		{ $(BENCH) run $(SCENARIO) $(RUN_ARGS); rc=$$?; $(BENCH) cluster down; exit $$rc; }; \
	fi

test: install test-deps
	$(BIN)/python -m pytest -q

perf: install servers
	$(BENCH) selftest

regress: install servers
	$(BENCH) cluster up && \
	{ $(BENCH) run smoke --target local:memcached --out results/regress-candidate && \
	  $(BENCH) compare results/baselines/smoke results/regress-candidate; rc=$$?; \
	  $(BENCH) cluster down; exit $$rc; }

cluster-up: install servers
	$(BENCH) cluster up

cluster-down: install
	$(BENCH) cluster down

clean:
	rm -rf $(VENV) .cluster build *.egg-info
