# The README's two commands: `make demo` and `make test`. Everything else serves them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast demo lint typecheck layers pytest binaries proto crds fuzz bench sidecar-deps \
  image image-deps wheels clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Build (once per machine, cached in ~/.cache/smimesh) kube-apiserver and kubectl.
binaries: $(STAMP)
	$(PY) -m smimesh.testing.binaries >/dev/null

## Regenerate the gRPC modules of the proxy-config contract (checked in; a test diffs them).
proto: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I. --python_out=. \
	  --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. smimesh/proxyconfig/proxyconfig.proto

lint: $(STAMP)
	$(VENV)/bin/ruff check smimesh tests bench
	$(VENV)/bin/ruff format --check smimesh tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

layers: $(STAMP)
	$(VENV)/bin/lint-imports

pytest: binaries sidecar-deps image-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## make test: lint, types, layering contract, then every test against a real control plane.
test: lint typecheck layers pytest

## make test-fast: while working, the fast tier alone: the tests marked `fast` (pure code: no
## cluster, no network socket, no process; tests/conftest.py fails one that tries). `make test`
## still runs them with everything else.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m fast $(PYTEST_ARGS)

## make demo: the main job on the embedded local control plane.
demo: binaries
	$(VENV)/bin/smimesh demo

## Regenerate the SMI CRDs in manifests/crds/ from smimesh.smi (checked in; a test diffs them).
crds: $(STAMP)
	$(VENV)/bin/smimesh crds

## Hypothesis fuzzing, 60 s per target: the SMI parser and validator, the sidecar's path
## normalizer, the HTTP/2 codec of a real sidecar process fed random and mutated frame
## sequences, and the HTTP/1.1 codec (requests and relayed responses); not part of make test.
fuzz: $(STAMP)
	SMIMESH_FUZZ_SECONDS=$${SMIMESH_FUZZ_SECONDS:-60} $(VENV)/bin/pytest -q -p no:cacheprovider \
	  tests/smi/fuzzing.py tests/sidecar/fuzzing_paths.py tests/sidecar/fuzzing_h2.py
	SMIMESH_FUZZ_SECONDS=$${SMIMESH_FUZZ_SECONDS:-60} $(VENV)/bin/pytest -q -p no:cacheprovider \
	  tests/sidecar/fuzzing_http1.py

## System tools the sidecar's tests need: iptables (transparent interception in network
## namespaces) and curl (a real client). Installed with apt only when missing.
sidecar-deps:
	@command -v iptables >/dev/null && command -v curl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables curl)

## What building and running the image needs: mmdebstrap (the Debian base), umoci (the OCI
## layout) and runc (tests/testing/meshimage/ run the image). Installed with apt only when missing.
image-deps:
	@command -v mmdebstrap >/dev/null && command -v umoci >/dev/null && command -v runc >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap umoci runc)

## build/wheels/: the smimesh wheel and its pinned dependencies' wheels, which the Dockerfile
## installs offline (needed before `docker build` or `buildah bud` too).
wheels: $(STAMP)
	$(PY) -m smimesh.testing.meshimage --wheels-only

## The smimesh image, built from the Dockerfile without a Docker daemon (as root): prints the
## OCI layout and the sizes; a rebuild with unchanged inputs is a cache hit (docs/image.md).
image: $(STAMP) image-deps
	$(PY) -m smimesh.testing.meshimage

## Sidecar benchmark: HTTP/1.1 keep-alive through the sidecar vs direct (and nginx/HAProxy
## from Debian when apt can install them); prints added latency and throughput ratios.
## Operator benchmark: SMI change -> every proxy holding it, vs the apiserver's watch latency.
bench: $(STAMP) binaries
	$(PY) bench/sidecar_http.py $(BENCH_ARGS)
	$(PY) bench/operator_propagation.py $(OPERATOR_BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
