# syntax=docker/dockerfile:1
# idservice container image: a builder stage makes wheels, the runtime stage installs them into a
# venv and runs `idservice serve` as an unprivileged user. Build: docker build -t idservice .

# ---------------------------------------------------------------- builder: wheels into /wheels
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the code does not rebuild them.
# Every dependency ships manylinux wheels (x86_64 and aarch64): no compiler is needed.
# README* is a wildcard so a missing README (which setuptools tolerates) does not fail COPY.
COPY pyproject.toml README* ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels --requirement requirements.txt

COPY idservice ./idservice
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="idservice" \
      org.opencontainers.image.description="Identity verification and account registration gRPC service"

# tini is PID 1: it forwards SIGTERM/SIGINT to idservice and reaps zombies. Without it the
# server would be PID 1, which ignores SIGTERM until a handler is installed, and `serve`
# installs its handler only after migrations and key loading.
# The tini pin is Debian's 0.19.0-1 with any binNMU suffix (+bN differs between architectures).
# uid/gid 10001: outside the range of system and common host users; numeric USER below lets
# orchestrators verify runAsNonRoot.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'tini=0.19.0-1*' \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 idservice \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin idservice \
    && install -d -o root -g root -m 0755 /app \
    && install -d -o 10001 -g 10001 -m 0700 /app/var

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IDSERVICE_LISTEN=0.0.0.0:50051

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /app
# SQLite database (var/idservice.db) and development keys (var/keys/) when not configured.
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
