# syntax=docker/dockerfile:1
# One image for every Charter component: `docker run <image> serve catalog` (any name of
# `charter serve --help`), and the one-shot jobs `pki init`, `seed`, `messaging declare`.
# docs/deployment.md explains it; docker-compose.yml uses it for every Charter service.
#
# The base image is pinned by its full tag (the Python the test suite runs on). Pin its
# digest as well where you build it:
#   docker buildx imagetools inspect python:3.11.7-slim-bookworm   # → sha256:…
#   docker build --build-arg PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:… .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# -- builder: a virtualenv with the pinned dependencies, then the project (editable, so
#    the code finds openapi/, governance/, contracts/ and catalog/ beside it at /app) -------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt ./
# runtime dependencies only (not the dev extra), every version from constraints.txt;
# a layer of its own, rebuilt only when the pins change
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt -r /tmp/requirements.txt
COPY charter ./charter
COPY charterctl ./charterctl
COPY auth ./auth
COPY services ./services
COPY governance ./governance
COPY openapi ./openapi
COPY contracts ./contracts
COPY catalog ./catalog
RUN /opt/venv/bin/pip install --no-deps -e . \
 && /opt/venv/bin/python -m compileall -q charter charterctl auth services governance

# -- runtime: slim, no build tools, a non-root user ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 charter \
 && useradd --system --uid 10001 --gid charter --home-dir /var/lib/charter \
            --shell /usr/sbin/nologin charter \
 && install -d -o charter -g charter -m 0700 /var/lib/charter /run/charter/pki
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHARTER_HOST=0.0.0.0 \
    CHARTER_VAR_DIR=/var/lib/charter \
    CHARTER_PKI_DIR=/run/charter/pki \
    CHARTER_WORKERS=1
WORKDIR /app
USER 10001:10001
# /health/live of the component named by CHARTER_SERVICE (compose and Kubernetes set it;
# https with the component's own certificate when it listens with mutual TLS)
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["charter", "health"]
ENTRYPOINT ["charter"]
CMD ["--help"]
