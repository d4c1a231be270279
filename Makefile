# serprof: `make run` (set up + CPU default sweep + HTML report), `make test` (set up + test suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SERPROF := $(VENV)/bin/serprof
# On a machine whose pip would otherwise pick a multi-GB CUDA build, pin the CPU wheel.
# GPU users: `make setup TORCH_SPEC='torch==2.13.0' PIP_EXTRA='--index-url ...'` as they need.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.serprof-installed

.PHONY: setup run test test-long check-all bench browser clean-venv slurm-up test-slurm gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '$(TORCH_SPEC)'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: setup
	$(SERPROF) sweep --scenario scenarios/quick.toml

# The suite runs on every core (pytest-xdist); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto

test: setup browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not long"

# The few tests that take over ~20 s each on 2 cores (whole README example, interleaved gate, doctor,
# kill -9 + resume): CI runs them after `make test`; `make check-all` runs everything.
test-long: setup browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m long

check-all: test test-long

# Headless Chromium for the report's browser test (Debian package; no browser download at run time).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "WARNING: could not install chromium; the browser test will fail loudly"; \
	  else echo "WARNING: chromium not found and cannot be installed here; the browser test will fail loudly"; fi; }

bench: setup
	$(SERPROF) bench kernels

# On a GPU machine: every GPU check, time-boxed, one table (GPU_CHECK=checks|sweep|all; TOTAL_S caps it).
GPU_CHECK ?= all
gpu-check: setup
	OUT=$${OUT:-gpu-check-out} PY=$(PY) .ci/gpu-check $(GPU_CHECK)

clean-venv:
	rm -rf $(VENV)

# A real one-node SLURM cluster (.ci/slurm: munged, slurmctld, slurmd; needs root and Debian's slurm-wlm,
# munge) and the tests that need it: time limit + requeue, scancel + resume, status, resources.
slurm-up:
	.ci/slurm/start

test-slurm: setup slurm-up
	SERPROF_SLURM_TESTS=1 $(PY) -m pytest -q -n 0 -m slurm -rs tests/scaleout
