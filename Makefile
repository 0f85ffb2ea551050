# background-agents-db: `make demo` (deploy + readiness checks on local sandbox hosts) and
# `make test` (lint, types, unit and integration tests). Both set up what they need first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := systemd-container mmdebstrap apt-cacher-ng iproute2 nftables openssh-client \
	prometheus python3-venv python3-pip postgresql-client tmux faketime
DEMO_HOSTS ?= 3

.PHONY: setup demo deploy evidence checks test lint down sandbox clean bench

setup: $(VENV)/.installed
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends $$missing >/dev/null \
		|| { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

sandbox: setup
	$(PY) -m sandbox up $(DEMO_HOSTS)

deploy: setup
	$(PY) -m bgdb deploy

checks: setup
	$(PY) -m bgdb check

# What two readiness items read and host state cannot show: a load test (20 s, 50 agents through
# PgBouncer; it removes its own rows when it ends) and a restore drill onto the lab's spare host
# (the primary is left alone). A primary that already holds agents is loaded only when asked:
# `make evidence LOADTEST_ARGS=--confirm-existing-data`.
DEMO_SPARE ?= sbx-node$(DEMO_HOSTS)
LOADTEST_ARGS ?=
evidence: setup
	$(PY) -m bgdb loadtest --agents 50 --duration 20 $(LOADTEST_ARGS)
	$(PY) -m bgdb restore --to $(DEMO_SPARE) --yes

# The checks' verdict is the demo's exit status, but `where` is printed either way.
demo: setup sandbox deploy evidence
	@$(PY) -m bgdb check; status=$$?; $(PY) -m bgdb where; exit $$status

# Benchmarks printing figures measured side by side in one run, against the deployed lab (or the
# $BGDB_HOSTS_FILE hosts): the agents' write path (bench/write_path.py: schema tax, pooled vs
# direct, open-loop tail latency, fleet). Other benches join here. e.g. BENCH_ARGS="--only tax".
BENCH_ARGS ?=
bench: setup
	$(PY) bench/write_path.py $(BENCH_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

# Two workers, a whole file each at a time (modules share their lab); the long modules go first.
test: setup lint
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --no-loadscope-reorder
	@# The tests' labs must be gone, whatever happened (the demo lab `sbx` may stay up).
	$(PY) -m sandbox leftovers --keep sbx

down: setup
	$(PY) -m sandbox down --all

clean: down
	rm -rf $(VENV) reports
