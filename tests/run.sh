#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, in its own virtual
# environment (.venv), then run all of it. With --checks first, `ruff check` and
# `mypy` run before the tests (as CI does); the other arguments go to pytest.
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

if [ "${1:-}" = "--checks" ]; then
  shift
  # Seconds, where the suite takes minutes: a lint or type error fails first.
  .venv/bin/ruff check
  .venv/bin/mypy
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest exits 5 when it collected no tests: nothing failed, but say so.
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$status"
