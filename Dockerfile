# syntax=docker/dockerfile:1
#
# The Conductor image: `conductor server` (coordinator) and `conductor worker MODULE` (workers).
#
#   docker build -t conductor:0.1.0 .
#
# Your tasks go in an image built FROM this one, for example:
#
#   FROM conductor:0.1.0
#   USER root
#   RUN pip install --no-cache-dir -r requirements.txt   # your tasks' dependencies
#   COPY acme/ /app/acme/
#   USER 10001:10001
#
# and `conductor worker acme.tasks` finds the module in /app, the working directory.

# -- build: install the project and its dependencies into a virtualenv -------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/conductor
WORKDIR /src
# Only what the package is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY conductor ./conductor
COPY conductor_server ./conductor_server
COPY conductor_worker ./conductor_worker
COPY conductor_cli ./conductor_cli
COPY conductor_ui ./conductor_ui
RUN /opt/conductor/bin/pip install . \
    && /opt/conductor/bin/conductor --help >/dev/null

# -- runtime -------------------------------------------------------------------------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="conductor" \
      org.opencontainers.image.description="Durable background tasks for Python: coordinator and workers" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/conductor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid 10001 conductor \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin conductor \
    && mkdir -p /app \
    && chown 10001:10001 /app
COPY --from=build /opt/conductor /opt/conductor
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# gRPC (clients, workers, health) and the coordinator's Prometheus metrics. Workers serve their
# metrics on the port given by --metrics-port (the chart uses 9091).
EXPOSE 50051 9090
ENTRYPOINT ["conductor"]
CMD ["--help"]
