# The two commands a new machine needs (see README):
#   make demo   build the text sample, serve it locally like the predictor pod, predict through the client, print
#   make test   the whole test suite, real TorchServe, kserve wrapper and S3 endpoint included
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test java venv lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	@# torch first and pinned: the CPU build installs from this machine's disk; an unpinned torch pulls CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

java:
	@bash .ci/check-java

demo: $(STAMP) java
	$(PY) samples/demo.py

test: $(STAMP) java
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check toolkit handlers tests samples benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP) java
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist .pytest_cache
