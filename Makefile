# Backstop: `make run` starts everything locally, `make test` runs the whole test suite.
# Both set up what they need on a fresh Debian machine (a virtualenv, and Debian packages
# when run as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

# Debian packages the tests start for real (see docs/commands.md, "Quick start"); chromium
# (with a font) runs the dashboard's browser tests.
TEST_DEBS := redis-server redis-sentinel prometheus-alertmanager prometheus chromium fonts-dejavu-core $(if $(shell command -v kubectl),,kubernetes-client)

# (bench-% is a pattern rule, which make never applies to a .PHONY target.)
.PHONY: run test fuzz gameday lint bench screenshots system-deps clean kube-build kube-up kube-down

# The embedded Redis is Debian's redis-server (Backstop needs Redis 7.0 or newer).
run: $(RUNTIME_STAMP)
	@$(MAKE) --no-print-directory system-deps TEST_DEBS=redis-server
	$(BIN)/backstop run

test: $(DEV_STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# R5: the fuzz tests with over 10,000 generated cases (`make test` runs ~2,000, seeded), and
# schemathesis from the OpenAPI document with ten times `make test`'s examples.
fuzz: $(DEV_STAMP) system-deps
	BACKSTOP_FUZZ_PROFILE=full $(BIN)/python -m pytest -q tests/reliability/test_fuzz.py tests/reliability/test_schemathesis.py $(PYTEST_ARGS)

# Game days: the real alerting pipeline, every scenario (docs/gamedays.md).
gameday: $(DEV_STAMP) system-deps
	$(BIN)/backstop gameday --report var/gameday-report.json

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/mkdocs build --strict --quiet --site-dir var/site

# Every design target (P1-P5, docs/benchmarks.md), then one table of bench/results.json.
# P1's load generator is wrk (Debian's package); P1-peer's alerta runs on PostgreSQL.
bench: $(DEV_STAMP) system-deps
	@$(MAKE) --no-print-directory system-deps TEST_DEBS="wrk postgresql"
	$(BIN)/python -m bench

# `make bench-<name>` runs one of them, `python -m bench.<name>`: ingest (P1), peer
# (P1-peer: alerta-server from PyPI, installed pinned into var/peer-venv on first use, on
# Debian's PostgreSQL, stock and tuned, rounds interleaved), storm (P2 and P5 on the real
# stack), latency (P3: webhook -> Kubernetes PATCH), judged (P3-judged), dashboard (D1),
# gameday (P4), watcher (P6: 5,000 Deployments on the test control plane), store (P7:
# Redis bytes at the caps, full against empty), safestate (P8: the canary scenario with
# production's alerting windows, about 8 minutes).
# Debian packages a benchmark needs beyond the tests' own:
BENCH_DEBS_ingest := wrk
BENCH_DEBS_peer := wrk postgresql
bench-%: $(DEV_STAMP) system-deps
	@$(if $(BENCH_DEBS_$*),$(MAKE) --no-print-directory system-deps TEST_DEBS="$(BENCH_DEBS_$*)")
	$(BIN)/python -m bench.$*

# The browser tests, also writing the dashboard screenshots the docs show (docs/screenshots).
screenshots: $(DEV_STAMP) system-deps
	BACKSTOP_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

$(VENV)/bin/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(MAKE) --no-print-directory system-deps TEST_DEBS=python3-venv
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): $(VENV)/bin/python requirements.txt pyproject.toml
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The real Kubernetes test control plane (docs/commands.md, "Quick start"): built once from
# Debian's source package, cached under ~/.cache/backstop/kube; `kube-up` writes
# var/kube/kubeconfig.
kube-build: $(DEV_STAMP)
	$(BIN)/python -m testbed.kube build

kube-up: $(DEV_STAMP)
	$(BIN)/python -m testbed.kube kube-up --dir var/kube

kube-down:
	$(BIN)/python -m testbed.kube kube-down --dir var/kube

# Installs missing Debian packages when root; otherwise says which ones to install.
system-deps:
	@missing=""; for p in $(TEST_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache
