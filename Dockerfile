# syntax=docker/dockerfile:1
# One image for the whole mesh (docs/image.md):
#   operator  python -m smimesh.operator        (the default command)
#   sidecar   smimesh sidecar run               (the injected proxy)
#   init      smimesh sidecar init              (iptables interception; needs NET_ADMIN)
#   test app  smimesh conformance app           (the conformance suite's Pods; docs/conformance.md)
# Build: docker build -t ghcr.io/smimesh/smimesh:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: wheels for smimesh and its pinned dependencies, installed into a venv ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/smimesh
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY smimesh ./smimesh
RUN /opt/smimesh/bin/pip install --no-compile -c constraints.txt . \
 && /opt/smimesh/bin/python -m compileall -q /opt/smimesh/lib \
 && find /opt/smimesh -name '*.pyi' -delete

# --- runtime: the venv, iptables for `sidecar init`, and nothing else --------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="smimesh" \
      org.opencontainers.image.description="An SMI service mesh: operator, sidecar and init" \
      org.opencontainers.image.licenses="Apache-2.0"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables=1.8.9-2 \
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
