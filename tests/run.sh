#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, in its own virtual
# environment (.venv), then run all of it. With --checks first, `ruff check` and
# `mypy` run before the tests; with --coverage, the tests are measured (line and
# branch, subprocesses too) and every module must reach the floor in
# tests/coverage_floor.py. CI (.ci/run) does both; the other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# A virtual environment of our own: Debian's Python refuses installs into the system (PEP 668).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

if [ ! -x /usr/bin/chromium ]; then
  # Browser tests drive Debian's chromium; playwright cannot download its own browser here.
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

checks=0
coverage=0
while [ "${1:-}" = "--checks" ] || [ "${1:-}" = "--coverage" ]; do
  [ "$1" = "--checks" ] && checks=1
  [ "$1" = "--coverage" ] && coverage=1
  shift
done

if [ "$checks" -eq 1 ]; then
  # Seconds, where the suite takes minutes: a lint or type error fails first.
  .venv/bin/ruff check
  .venv/bin/mypy
fi

measure=()
if [ "$coverage" -eq 1 ]; then
  rm -f .coverage .coverage.*
  measure=(--cov --cov-report=term)
fi
set +e
.venv/bin/python -m pytest "${measure[@]}" "$@"
status=$?
set -e
if [ "$coverage" -eq 1 ] && { [ "$status" -eq 0 ] || [ "$status" -eq 5 ]; }; then
  .venv/bin/python tests/coverage_floor.py || status=1
fi
# pytest exits 5 when it collected no tests: nothing failed, but say so.
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$status"
