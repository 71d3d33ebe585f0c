#!/usr/bin/env bash
# Set up a development environment: a virtualenv in .venv with persona-stream
# and its test tools, and the Kafka broker's jars fetched into the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python >= 3.11 is needed (PYTHON=$PYTHON)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip setuptools
# compiled plainly at install; `make pgo` rebuilds them profile-guided (README)
.venv/bin/pip install -q -e '.[test]'
deploy/kafka.sh fetch
