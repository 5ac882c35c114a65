# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.acgate-installed
DEMO_OUT ?= demo-out
# torch's version is declared once, in constraints.txt; the CPU build of it is installed.
TORCH_VERSION := $(shell sed -n 's/^torch==//p' constraints.txt)
# Where the CPU build lives on an ordinary machine (PyPI's Linux wheel is the multi-GB CUDA one).
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
# The image's name, as the components declare it (components/_image.py, pyproject.toml's version).
IMAGE ?= $(shell sed -n 's/^IMAGE_REPOSITORY = "\(.*\)"/\1/p' components/_image.py):$(shell \
  sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Docker when its daemon answers, else podman.
CONTAINER_TOOL ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
  elif command -v podman >/dev/null 2>&1; then echo podman; else echo docker; fi)

.PHONY: install demo test test-all lint bench-quick image image-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, pinned to its CPU build (+cpu). An offline dry run (--no-index: no network, about
# 1 s) asks whether the venv or pip's own configuration (a pip.conf/PIP_FIND_LINKS wheel folder,
# as on CI) already has that wheel; only when not is TORCH_INDEX_URL added as an extra index.
# Adding it unconditionally would break machines that cannot reach it: pip retries an unreachable
# index 5 times for every package it looks up.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	if $(PY) -m pip install --dry-run --no-deps --no-index --quiet \
	    'torch==$(TORCH_VERSION)+cpu' >/dev/null 2>&1; then \
	  $(PY) -m pip install --quiet 'torch==$(TORCH_VERSION)+cpu'; \
	else \
	  $(PY) -m pip install --quiet --extra-index-url '$(TORCH_INDEX_URL)' \
	    'torch==$(TORCH_VERSION)+cpu'; \
	fi
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/acgate demo --out $(DEMO_OUT)

# Test processes: the suite runs its files on this many workers (pytest-xdist; a file stays on one
# worker, the minute-long ones start first: tests/conftest.py). 2 on the 2-core CI machine.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q --durations=25 -n $(TEST_WORKERS) --dist loadfile \
	  --no-loadscope-reorder

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests components bench docker pipeline.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

# The release image from the pinned python base (needs a registry); buildah does not read
# docker/Dockerfile.dockerignore by itself, BuildKit does.
image:
	$(CONTAINER_TOOL) build -f docker/Dockerfile \
	  $(if $(filter podman,$(CONTAINER_TOOL)),--ignorefile docker/Dockerfile.dockerignore) \
	  --build-arg VCS_REF="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	  --build-arg BUILD_DATE="$$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t $(IMAGE) .

# Build with podman on a locally made Debian base (no registry) and test the image locked down.
image-test: $(STAMP)
	PY=$(CURDIR)/$(PY) docker/image_test.sh

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
