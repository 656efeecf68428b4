# The README's two commands: `make demo` and `make test`. Everything else serves them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast demo lint typecheck layers pytest pytest-node binaries node-binaries node-deps helm \
  canary-tools canary-tools-idle \
  image image-deps wheels proto crds fuzz bench sidecar-deps clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## Build (once per machine, cached in ~/.cache/smimesh) kube-apiserver and kubectl.
binaries: $(STAMP)
	$(PY) -m smimesh.testing.binaries >/dev/null

## Build (once per machine, cached in ~/.cache/smimesh/tools) the helm the chart is tested
## with (charts/smimesh/, docs/install.md); prints its path.
helm: $(STAMP)
	@$(PY) -m smimesh.testing.helm

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

pytest: binaries helm sidecar-deps image
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## make test: lint, types, layering contract, every test against a real control plane, then
## the node tier on a real node.
# node-binaries first: the node's kube tools build in the same `go build` as kube-apiserver
# and kubectl (about a third of the cold time of separate builds). On a fresh machine the
# canary tier's tools (Prometheus, Flagger, Argo Rollouts: about 8 min of `go build`) build
# at the lowest CPU priority while the main tier runs, in the time its tests spend waiting;
# when cached, `canary-tools` returns at once.
test: lint typecheck layers node-binaries
	@$(MAKE) --no-print-directory -j2 pytest canary-tools-idle
	@$(MAKE) --no-print-directory pytest-node

canary-tools-idle:
	@nice -n 19 $(MAKE) --no-print-directory canary-tools

## make test-fast: while working, the fast tier alone: the tests marked `fast` (pure code: no
## cluster, no network socket, no process; tests/conftest.py fails one that tries). `make test`
## still runs them with everything else.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m fast $(PYTEST_ARGS)

## make demo: the main job on the embedded local control plane.
demo: binaries
	$(VENV)/bin/smimesh demo

## Regenerate the SMI CRDs from smimesh.smi into the manifests and the Helm chart (both
## checked in; a test diffs them).
crds: $(STAMP)
	$(VENV)/bin/smimesh crds
	$(VENV)/bin/smimesh crds --dir charts/smimesh/files/crds

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

## Debian packages the real node of `SMIMESH_CLUSTER=node` runs (apt only when one is missing).
NODE_PACKAGES := containerd runc containernetworking-plugins iptables conntrack mmdebstrap umoci
node-deps:
	@dpkg -s $(NODE_PACKAGES) >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(NODE_PACKAGES))

## Build (once per machine, cached) what the real node runs: the node's kube tools (one go
## build with the control plane's), CoreDNS, the pause and test images.
node-binaries: $(STAMP) node-deps
	$(PY) -m smimesh.testing.nodes >/dev/null

## Build (once per machine, cached in ~/.cache/smimesh/tools) the real controllers and the
## Prometheus the canary tests run (tests/canary/): Prometheus and Flagger from their Go
## modules, Argo Rollouts through its wrapper module hack/argo-rollouts.
canary-tools: $(STAMP)
	$(PY) -m smimesh.testing.prometheus >/dev/null
	$(PY) -m smimesh.testing.flagger >/dev/null
	$(PY) -m smimesh.testing.argorollouts >/dev/null

## The node tier: real Pods on a real node (root; `pytest -m node`), the mesh installed on it
## from the smimesh image (tests/testing/test_mesh_on_node.py), real Flagger and Argo
## Rollouts canaries judged through a real Prometheus (tests/canary/). Plain `pytest` skips it.
pytest-node: binaries node-binaries image canary-tools
	$(VENV)/bin/pytest -m node $(PYTEST_ARGS)

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
## Operator benchmark: SMI change -> every proxy holding it, vs the apiserver's watch latency,
## at 1k/5k/10k Services x 100/1,000 proxies by default (long); OPERATOR_BENCH_ARGS=--quick
## for a smoke run, or e.g. "--sizes 1000 --proxies 100 --rounds 20 --json".
bench: $(STAMP) binaries
	$(PY) bench/sidecar_http.py $(BENCH_ARGS)
	$(PY) bench/operator_propagation.py $(OPERATOR_BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
