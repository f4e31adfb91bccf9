# syntax=docker/dockerfile:1
#
# Kinema images: two targets from one file (BuildKit, the default builder since Docker 23).
#
#   docker build --target api    -t kinema-api .     # FastAPI gateway: base dependencies only, no torch
#   docker build --target worker -t kinema-worker .  # Celery GPU worker: .[worker] (torch CUDA wheels, PyAV)
#   docker compose build                              # both, as docker-compose.yml names them
#
#   docker run --rm -p 8000:8000 kinema-api
#   docker run --rm --gpus all kinema-worker         # needs the NVIDIA Container Toolkit on the host
#
# Stages: python-base -> builder (compilers) -> deps-api, deps-worker, kinema-wheel (wheels);
# python-base -> runtime -> api, worker. The final images install wheels from bind mounts, so
# neither the wheels nor the build tools end up in them.

ARG PYTHON_IMAGE=python:3.11-slim
# Numeric, so Kubernetes' runAsNonRoot can verify it.
ARG KINEMA_UID=10001

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore


# ---- build stages: compilers live here only -------------------------------------------------
FROM python-base AS builder
# Unpinned on purpose: the compilers never reach a final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./

# Dependency wheels come from pyproject.toml alone, so a code change does not rebuild them.
FROM builder AS deps-api
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"]))' \
        > requirements.txt \
    && mkdir /wheels && cp requirements.txt /wheels/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels -r requirements.txt

FROM builder AS deps-worker
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["worker"]))' \
        > requirements.txt \
    && mkdir /wheels && cp requirements.txt /wheels/
# torch from PyPI is the CUDA build on linux/x86_64 (its nvidia-* wheels carry CUDA and cuDNN);
# the PyAV wheels bundle FFmpeg with libx264 and h264_nvenc.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels -r requirements.txt

FROM builder AS kinema-wheel
# The wheel carries migrations/ too, so `kinema migrate` needs no alembic.ini in the image.
COPY app ./app
COPY worker ./worker
COPY model ./model
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .


# ---- runtime images ---------------------------------------------------------------------------
FROM python-base AS runtime
ARG KINEMA_UID
# KINEMA_HOME: a writable place for anything left on the embedded defaults.
ENV PIP_NO_CACHE_DIR=1 \
    KINEMA_HOME=/var/lib/kinema
RUN groupadd --system --gid "${KINEMA_UID}" kinema \
    && useradd --system --uid "${KINEMA_UID}" --gid kinema --create-home --home-dir /home/kinema \
        --shell /usr/sbin/nologin kinema \
    && install -d -o kinema -g kinema /var/lib/kinema
WORKDIR /app

FROM runtime AS worker
ARG KINEMA_UID
# The toolkit mounts the driver libraries these name; "video" adds NVENC for PyAV's h264_nvenc.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    KINEMA_MODEL_CACHE_DIR=/var/cache/kinema/models \
    HF_HOME=/var/cache/kinema/models/huggingface
RUN --mount=type=bind,from=deps-worker,source=/wheels,target=/tmp/wheels \
    pip install --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
RUN --mount=type=bind,from=kinema-wheel,source=/wheels,target=/tmp/wheels \
    pip install --no-index --no-deps /tmp/wheels/kinema-*.whl \
    && pip check
# Owned by the worker's user so a fresh named volume mounted here starts out writable.
RUN install -d -o kinema -g kinema /var/cache/kinema /var/cache/kinema/models
USER ${KINEMA_UID}:${KINEMA_UID}
CMD ["kinema", "worker", "--concurrency", "1"]

# Last, so a plain `docker build .` gives the gateway.
FROM runtime AS api
ARG KINEMA_UID
RUN --mount=type=bind,from=deps-api,source=/wheels,target=/tmp/wheels \
    pip install --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
RUN --mount=type=bind,from=kinema-wheel,source=/wheels,target=/tmp/wheels \
    pip install --no-index --no-deps /tmp/wheels/kinema-*.whl \
    && pip check
USER ${KINEMA_UID}:${KINEMA_UID}
EXPOSE 8000
# slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["kinema", "serve", "--host", "0.0.0.0", "--port", "8000"]
