# The project's verbs. `make demo` and `make test` work on a fresh machine: they create .venv and
# install everything the project needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Python may keep what it compiles, whatever the calling shell says: each pytest process (one per
# xdist worker) would otherwise compile the project and rewrite the asserts of every test module and
# pytest plugin again (7.6 s against 4.2 s a process to collect make check's tests, at 84e7f57).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test check chaos screenshots bench bench-tracing bench-auth lint format clean system-deps bench-deps docker-engine js-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sim,test]'
	touch $(STAMP)

install: $(STAMP)

# The Trino CLI tests run the real CLI jar (a Java runtime); the PostgreSQL store tests start a
# throwaway server from the machine's PostgreSQL binaries; the dashboard tests run a real Prometheus
# (only its binary: the package's service is never started by the tests); the LDAP tests start a throwaway
# slapd (Debian's slapd and ldap-utils, never the system service); the UI tests drive Debian's
# Chromium (Playwright never downloads a browser); the Kubernetes manifests' tests render them with
# kubectl kustomize (Debian's kubernetes-client); the fleet scenarios put Debian's haproxy in front
# of three gateway nodes; the JavaScript client tests run Node.js (Debian's nodejs and npm); the chaos
# suite's container clusters need a Docker engine.
system-deps: docker-engine
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	{ command -v prometheus >/dev/null 2>&1 || test -x /usr/bin/prometheus; } || missing="$$missing prometheus"; \
	{ command -v slapd >/dev/null 2>&1 || test -x /usr/sbin/slapd; } || missing="$$missing slapd"; \
	{ command -v ldapadd >/dev/null 2>&1 && command -v ldapsearch >/dev/null 2>&1; } || missing="$$missing ldap-utils"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	test -x /usr/sbin/haproxy || missing="$$missing haproxy"; \
	{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Installs docker.io and starts dockerd if no engine answers; never fails (the container cases skip).
docker-engine:
	@bash chaos/docker_engine.sh

demo: install
	$(BIN)/python -m trinosim.demo

# The Trino JavaScript client the tests drive (tests/js, from the npm registry, pinned by its lock file).
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --silent
	touch $(JS_STAMP)

js-deps: system-deps $(JS_STAMP)

# The suite runs on several pytest-xdist workers at once: most of a test's time is waiting, and every
# test starts its own servers on free loopback ports. Each module goes to one worker whole (loadscope:
# its module-scoped servers start once, its tests run in their order); the tests of ALONE_MODULES (the
# fleet and burst scenarios, which saturate two cores by themselves) run with no other test beside
# them, one after another on one worker (conftest.py). Modules are handed out in the order they are
# collected (--no-loadscope-reorder; xdist's own order puts the modules with the most tests first, and
# those are short): the alone block and the chaos scenarios, the longest, start first and the short
# ones fill the gaps. WORKERS=0 runs everything in this process, one test at a time.
WORKERS ?= 4
XDIST = -n $(WORKERS) --dist loadscope --no-loadscope-reorder
# make check's tests wait more than they compute too (half the two cores' time goes unused on two
# workers): four, as make test (at 84e7f57 on the quiet 2-core machine, compiled files kept: 69 s on
# four workers, 77 s on three).
CHECK_WORKERS ?= 4
# How many of the slowest tests make test lists at the end (0: every test, as in docs/test-durations.txt).
DURATIONS ?= 30

# chaos first: collected first, so handed out first (XDIST above).
test: install system-deps js-deps
	$(BIN)/python -m pytest -q $(XDIST) --durations=$(DURATIONS) chaos tests

# The inner loop: lint, and every test that needs no child process and no SQL store (in-process
# trinosim servers, the gateway in process on the in-memory store).
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n $(CHECK_WORKERS) --dist loadscope --no-loadscope-reorder -m "not slow" tests chaos

# The chaos suite: clusters killed, paused, slowed and deactivated under load (README, "Chaos suite").
chaos: install system-deps
	$(BIN)/python -m pytest -q $(XDIST) chaos

# The UI's screenshots in docs/images, taken by its browser tests.
screenshots: install system-deps
	UI_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/ui

# The benchmark compares the gateway with nginx, loaded by wrk (both Debian packages).
bench-deps:
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	{ command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx; } || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# bench: direct, nginx and the gateway; bench.fleet: nodes behind haproxy; bench.admission: what
# admission control and failover's held queries cost; bench.estimates: what cost-aware routing costs
# a query (docs/performance.md); bench.cache: a result cache hit against the cluster, and the cache's
# memory against its bound; bench.scaling: a burst of queries from zero (the cluster started by the
# command scaler) against the same burst on a READY cluster (docs/scaling.md).
bench: install bench-deps system-deps
	$(BIN)/python -m bench
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.admission
	$(BIN)/python -m bench.estimates
	$(BIN)/python -m bench.cache
	$(BIN)/python -m bench.scaling

# What tracing costs on the poll path, with the OTLP endpoint up and down (docs/performance.md).
bench-tracing: install bench-deps
	$(BIN)/python -m bench.tracing_overhead

# Whether the admin API's answer time tells which user names exist (docs/security.md).
bench-auth: install
	$(BIN)/python -m bench.auth_timing

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
