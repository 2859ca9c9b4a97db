# Everyday commands. `make bench` and `make test` work on a fresh Debian machine:
# they create .venv, install the package, and install the cache servers with
# apt-get when run as root and they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BENCH  := $(BIN)/bench
SERVER_PACKAGES := memcached redis-server redis-tools nutcracker
TEST_PACKAGES   := libhdrhistogram-java chromium
PERF_PACKAGES   := libmemcached-tools

SCENARIO ?= mediawiki
RSS_SECONDS ?= 300
DURATION ?= 30s
RATE     ?=
TARGET   ?=
RUN_ARGS := $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) $(if $(TARGET),--target $(TARGET))

.PHONY: help install servers test-deps bench test perf regress baseline cluster-up cluster-down clean

help:
	@echo "make bench   install, start a local cache cluster, run SCENARIO=$(SCENARIO), report, stop"
	@echo "             overrides: SCENARIO= DURATION= RATE= TARGET= (TARGET skips the local cluster)"
	@echo "make test    the whole test suite against real servers started by the tests"
	@echo "make perf    harness self-benchmarks (ratios against plain loops), Locust RSS over a run"
	@echo "             overrides: RSS_SECONDS=$(RSS_SECONDS) (3600 for the hour-long check)"
	@echo "make regress smoke run on a local memcached + compare against results/baselines/smoke-memcached"
	@echo "             overrides: REGRESS_TOLERANCE=$(REGRESS_TOLERANCE) REGRESS_OUT= CLUSTER_STATE="
	@echo "make baseline re-record results/baselines/smoke-{memcached,redis} on this machine"

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
		$(BENCH) cluster up --gutter 1 && \
		{ $(BENCH) run $(SCENARIO) $(RUN_ARGS); rc=$$?; $(BENCH) cluster down; exit $$rc; }; \
	fi

test: install test-deps
	$(BIN)/python -m pytest -q

perf: install servers
	@sh scripts/ensure-packages.sh $(PERF_PACKAGES)
	$(BENCH) selftest
	$(BIN)/python -m bench.rss --seconds $(RSS_SECONDS)

# `make regress` / `make baseline`: scripts/regress.sh says what they do. Both start a
# local cluster of their own (in CLUSTER_STATE, default a temporary directory) and stop it
# whatever happens.
#
# REGRESS_TOLERANCE is 100% (flag a real doubling of any percentile) on purpose. The
# committed baseline comes from a shared 2-core machine, where identical back-to-back
# smoke runs differ by up to +60% in p50/p90 with significance (values of 40-200 us, in
# which a few tens of us of scheduling delay is a large fraction), and by up to +110%
# while a neighbour is busy (measured over 8 runs, 56 ordered pairs: 9 pairs beyond 50%,
# 2 beyond 100%). Compare's default 10%, or 50%, would fail on that noise; 100% still
# catches what this check is for (a stalling server, a blocking client path, a wrong
# server flag), which moves the tail by multiples; one core kept busy by another process
# already trips it. On a dedicated quiet runner with baselines of its own, tighten it,
# e.g. REGRESS_TOLERANCE=20% (tests/test_compare_e2e.py shows 20% works when the noise
# of the machine is controlled).
REGRESS_TOLERANCE ?= 100%
REGRESS_OUT       ?= results/regress-$(shell date -u +%Y%m%dT%H%M%SZ)
CLUSTER_STATE     ?=
REGRESS_ENV := BENCH=$(BENCH) PYTHON=$(BIN)/python CLUSTER_STATE=$(CLUSTER_STATE)

regress: install servers
	@$(REGRESS_ENV) sh scripts/regress.sh compare $(REGRESS_OUT) $(REGRESS_TOLERANCE)

baseline: install servers
	@$(REGRESS_ENV) sh scripts/regress.sh record

cluster-up: install servers
	$(BENCH) cluster up

cluster-down: install
	$(BENCH) cluster down

clean:
	rm -rf $(VENV) .cluster build *.egg-info
