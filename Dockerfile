# syntax=docker/dockerfile:1
# The mlkube model server image: `mlkube serve` on port 8501, non-root, read-only-root ready.
#
#   docker build -t ghcr.io/mlkube/mlkube-server:0.1.0 .
#   docker run --rm -p 8501:8501 -v $PWD/examples/iris:/etc/mlkube:ro \
#     ghcr.io/mlkube/mlkube-server:0.1.0 serve /etc/mlkube/iris.yaml --host 0.0.0.0
#
# The Kubernetes renderer uses this image by default (ModelDeployment DEFAULT_IMAGE) and runs
# it as UID 1000 with a read-only root filesystem and an emptyDir on /tmp.
# Extras (xgboost, lightgbm, torch) are opt-in: --build-arg EXTRAS=xgboost,lightgbm

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Wheels for mlkube and every dependency; the runtime stage installs them without a compiler.
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS=""
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels "mlkube${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /wheels \
    && groupadd --gid 1000 mlkube \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mlkube \
    && mkdir -p /etc/mlkube /models
USER 1000:1000
EXPOSE 8501
# Liveness of the server itself; Kubernetes uses its own probes (/v2/health/ready too).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/v2/health/live', timeout=2).status != 200)"]
ENTRYPOINT ["mlkube"]
CMD ["serve", "/etc/mlkube/spec.yaml", "--host", "0.0.0.0", "--port", "8501"]
