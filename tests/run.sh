#!/usr/bin/env bash
# The one test command: installs what is missing, then runs ruff, mypy and pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "tests/run.sh: Python >= 3.11 is required (set PYTHON=...)" >&2
  exit 2
fi

# Real servers: the fixtures start Redis and RabbitMQ when they are installed but stopped;
# on a machine without them (or without Chromium or promtool), install them from Debian's packages first.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
# The playground page's browser tests drive Debian's Chromium (never a downloaded browser).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# promtool (in Debian's prometheus) checks the metrics pages, the Prometheus config and its rules.
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The project and its test dependencies, in .venv, exactly as requirements/dev.lock pins them
# (hashes checked); .venv is made anew whenever pyproject.toml or the lock changes, so nothing
# an earlier install left behind is tested. Upgrading is requirements/update.sh's job.
stamp=$(cat pyproject.toml requirements/dev.lock | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.install-stamp 2>/dev/null)" != "$stamp" ]; then
  echo "tests/run.sh: installing requirements/dev.lock and the project into .venv" >&2
  rm -rf .venv
  "$python" -m venv .venv
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
    -r requirements/dev.lock &&
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
      --no-build-isolation -e .; } >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    exit 1
  fi
  echo "$stamp" >.venv/.install-stamp
fi

echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
exec .venv/bin/pytest "$@"
