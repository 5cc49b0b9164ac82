# The two commands a new machine needs (see README):
#   make demo   build the text sample, serve it locally like the predictor pod, predict through the client, print
#   make test   the whole test suite, real TorchServe, kserve wrapper and S3 endpoint included
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test java debian-deps venv lint bench clean

# Programs the tests run, by the Debian package that brings each (installed by .ci/debian-deps when it can).
TEST_DEBS := docker-registry:docker-registry busybox:busybox-static podman:podman prometheus:prometheus

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	@# torch first and pinned: the CPU build installs from this machine's disk; an unpinned torch pulls CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

java:
	@bash .ci/debian-deps java:openjdk-17-jre-headless
	@bash .ci/check-java

debian-deps:
	@bash .ci/debian-deps $(TEST_DEBS)

demo: $(STAMP) java
	$(PY) samples/demo.py

test: $(STAMP) java debian-deps
	@bash .ci/check-compat-python
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check toolkit handlers tests samples benchmarks
	$(VENV)/bin/mypy
	@# handlers/ run on the worker image's Python (3.8 in KServe's default image); mypy >= 1.17 cannot target 3.8,
	@# so the oldest target it has; ruff (py38 for handlers/) and tests/handlers check the 3.8-only rules.
	$(VENV)/bin/mypy --python-version 3.10 -p handlers

bench: $(STAMP) java
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist .pytest_cache
