#!/usr/bin/env bash
# Re-resolve the lock files from pyproject.toml; the only way they change.
# Usage: bash requirements/update.sh            keep every pin that still fits pyproject.toml
#        bash requirements/update.sh --upgrade  take the newest versions pyproject.toml allows
#        bash requirements/update.sh --upgrade-package redis
# Then run `bash tests/run.sh` (it reinstalls .venv from the new lock) and commit both locks.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
[ -x "$uv" ] || uv=$(command -v uv) || {
  echo "requirements/update.sh: uv is missing: run 'bash tests/run.sh' once (it installs uv into .venv)" >&2
  exit 2
}
digest=$(.venv/bin/python requirements/check.py digest)
compile() { # compile OUTPUT [uv pip compile args...]
  local out=$1 tmp
  shift
  tmp=$(mktemp)
  [ -f "$out" ] && cp "$out" "$tmp"
  "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --no-header --output-file "$tmp" "$@"
  {
    echo "# Locked by requirements/update.sh from pyproject.toml; do not edit by hand."
    echo "# pyproject-dependencies-sha256: $digest"
    cat "$tmp"
  } >"$out"
  rm -f "$tmp"
}
# What the image installs: the services' dependencies only.
compile requirements/runtime.lock pyproject.toml "$@"
# What the image's build stage builds the project's wheel with.
compile requirements/build.lock requirements/build.in "$@"
# What tests/run.sh installs: the same pins plus the test and bench tools.
compile requirements/dev.lock pyproject.toml requirements/build.in --extra test --extra bench \
  --constraint requirements/runtime.lock --constraint requirements/build.lock "$@"
echo "requirements/update.sh: wrote requirements/runtime.lock, build.lock and dev.lock" >&2
