# syntax=docker/dockerfile:1
# One image for every Shardline service: `python -m gateway`, `python -m worker`, `shardline`.
# (The syntax directive counts only on the very first line.)

# --- build: the project's wheel (compilers stay in this stage) ---
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The build backend and every dependency exactly as locked (hashes checked): an image built
# next year holds what the tests ran against today. requirements/update.sh changes the locks.
COPY requirements/build.lock ./requirements/
RUN pip install --require-hashes -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY gateway ./gateway
COPY worker ./worker
COPY playground ./playground
COPY cli ./cli
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# --- runtime: the locked dependencies and the project's wheel, as an unprivileged user ---
FROM python:3.11.7-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 HEALTH_PORT=8080
RUN groupadd --system --gid 10001 shardline \
    && useradd --system --uid 10001 --gid shardline --home-dir /app --shell /usr/sbin/nologin shardline
COPY requirements/runtime.lock /tmp/runtime.lock
RUN pip install --require-hashes -r /tmp/runtime.lock && rm /tmp/runtime.lock
COPY --from=build /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels
WORKDIR /app
USER shardline:shardline
EXPOSE 8080
# Plain Python (no curl in a slim image): healthy while the process answers /livez.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('HEALTH_PORT', '8080')}/livez\", timeout=2)"]
# Which service: `python -m gateway` or `python -m worker` (compose and stack set it).
CMD ["python", "-m", "worker"]
