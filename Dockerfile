# syntax=docker/dockerfile:1
# idservice container image: a builder stage makes wheels, the runtime stage installs them into a
# venv and runs `idservice serve` as an unprivileged user.
#
# BASE_IMAGE is any Debian 12 (bookworm) image with Python 3.11 and its venv module:
# - python:3.11-slim-bookworm (the default), where a registry is reachable:
#     docker build -t idservice .
# - a local Debian base made with debootstrap (python3, python3-venv and tini from Debian), where
#   none is: scripts/build-image (docs/deploy.md, "Image").
# Both stages use the same base, so the venv's interpreter path is the same in both.
#
# PyPI behind a TLS-inspecting proxy: pass the host's CA bundle as the build secret `ca-bundle`
# (podman/docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt). It is
# mounted for the pip step alone and never stored in a layer; without it pip uses its own roots.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder: wheels into /wheels
FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120

WORKDIR /src

# pip from a throwaway venv: Debian's python3 has no pip of its own (and refuses to install
# into the system), the python image's pip works the same way from a venv.
RUN python3 -m venv /opt/build

# Dependencies first, from pyproject.toml alone, so editing the code does not rebuild them.
# Every dependency ships manylinux wheels (x86_64 and aarch64): no compiler is needed.
# README* is a wildcard so a missing README (which setuptools tolerates) does not fail COPY.
COPY pyproject.toml README* ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/build/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels --requirement requirements.txt

COPY idservice ./idservice
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="idservice" \
      org.opencontainers.image.description="Identity verification and account registration gRPC service"

# tini is PID 1: it forwards SIGTERM/SIGINT to idservice and reaps zombies. Without it the
# server would be PID 1, which ignores SIGTERM until a handler is installed, and `serve`
# installs its handler only after migrations and key loading.
# The Debian base carries tini already; on the python image it comes from Debian here.
# The tini pin is Debian's 0.19.0-1 with any binNMU suffix (+bN differs between architectures).
# uid/gid 10001: outside the range of system and common host users; numeric USER below lets
# orchestrators verify runAsNonRoot.
RUN if [ ! -x /usr/bin/tini ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends 'tini=0.19.0-1*' \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 idservice \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin idservice \
    && install -d -o root -g root -m 0755 /app \
    && install -d -o 10001 -g 10001 -m 0700 /app/var

ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IDSERVICE_LISTEN=0.0.0.0:50051

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
# Installing compiles every module to bytecode now: the root filesystem may be read-only later.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /app
# SQLite database (var/idservice.db) and development keys (var/keys/) when not configured.
# The only place the service writes: with a read-only root filesystem, mount a volume or a
# tmpfs owned by 10001 here (docs/deploy.md).
VOLUME /app/var
EXPOSE 50051

USER 10001:10001

# Asks the gRPC health service (overall status) on the port of IDSERVICE_LISTEN; SERVING or
# exit 1. Plaintext only: with IDSERVICE_TLS_* set, override it (docker run --health-cmd, or
# the healthcheck of compose/orchestrator).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2, health_pb2_grpc; port = os.environ.get('IDSERVICE_LISTEN', '').rpartition(':')[2] or '50051'; stub = health_pb2_grpc.HealthStub(grpc.insecure_channel('127.0.0.1:' + port)); reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5); sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "idservice"]
CMD ["serve"]
