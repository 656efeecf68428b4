# syntax=docker/dockerfile:1
# One image for the whole mesh (docs/image.md):
#   operator  python -m smimesh.operator        (the default command)
#   sidecar   smimesh sidecar run               (the injected proxy)
#   init      smimesh sidecar init              (iptables interception; needs NET_ADMIN)
#   test app  smimesh conformance app           (the conformance suite's Pods; docs/conformance.md)
# Build: make wheels && docker build -t ghcr.io/smimesh/smimesh:0.1.0 .
#   (or `make image`: this same file, built without a Docker daemon; docs/image.md)
# The build context's build/wheels/ holds the smimesh wheel and every pinned dependency's
# wheel (`make wheels`), so no step but apt-get needs the network.

ARG BASE_IMAGE=debian:bookworm-20250520-slim

# --- build: smimesh and its pinned dependencies installed from the wheels into a venv -----
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /opt/smimesh
COPY build/wheels/ ./wheels/
RUN /opt/smimesh/bin/pip install --no-compile --no-index --find-links=./wheels smimesh \
 && /opt/smimesh/bin/python -m compileall -q /opt/smimesh/lib \
 && find /opt/smimesh -name '*.pyi' -delete

# --- runtime: Debian's python3, the venv, iptables for `sidecar init`, and nothing else ----
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="smimesh" \
      org.opencontainers.image.description="An SMI service mesh: operator, sidecar and init" \
      org.opencontainers.image.licenses="Apache-2.0"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 iptables=1.8.9-2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 smimesh \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin smimesh
COPY --from=build /opt/smimesh /opt/smimesh
ENV PATH=/opt/smimesh/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The operator and the sidecar run as this user (the injector sets the proxy's own uid);
# only the init container runs as root, with NET_ADMIN, to write iptables rules.
USER 65532:65532
WORKDIR /tmp
EXPOSE 9443 15010
CMD ["python", "-m", "smimesh.operator"]
