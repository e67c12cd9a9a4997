# Backstop's container image. The entrypoint is the `backstop` command; there is no default
# command, because each process names its own (as deploy/base does):
#   receiver: gunicorn --config python:receiver.gunicorn_conf "receiver.app:create_app()"
#             (override the entrypoint; BACKSTOP_BIND defaults to 0.0.0.0:8080 here)
#   worker:   backstop worker
#   watcher:  backstop watch
# (`backstop run`, the local all-in-one, starts its own Redis: not for containers.)
#
#   docker build -t backstop:0.1.0 .
#
# For reproducible builds, pin both FROM lines by digest as well
# (python:3.11-slim-bookworm@sha256:...). tests/unit/test_dockerfile.py lints this file.

# --- builder: wheels for the pinned dependencies and for Backstop itself -----------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip wheel --wheel-dir /wheels -r requirements.txt
# Then Backstop, from the product packages only (no tests, test bed or game days).
COPY pyproject.toml README.md ./
COPY config ./config
COPY core ./core
COPY receiver ./receiver
COPY workers ./workers
COPY cli ./cli
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: the wheels installed, nothing to build with ---------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    BACKSTOP_BIND=0.0.0.0:8080 \
    MPLCONFIGDIR=/tmp/matplotlib
# Only the pinned runtime requirements and Backstop, from the builder's wheels (no index:
# nothing else can sneak in). The wheels are mounted, not copied, so no layer keeps them.
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r /tmp/requirements.txt backstop \
    && rm /tmp/requirements.txt
# The default policy, where BACKSTOP_CONFIG's default (config/backstop.yaml) finds it from
# the working directory; Kubernetes mounts its own at /etc/backstop/backstop.yaml.
WORKDIR /app
COPY config/backstop.yaml config/backstop.yaml
RUN groupadd --system --gid 10001 backstop \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin backstop
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["backstop"]
