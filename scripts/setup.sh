#!/usr/bin/env bash
# Installs the project from requirements.lock (pinned versions, sha256 hashes) into a virtual
# environment, and WordNet for NLTK. `make setup` and the Dockerfile both run exactly this,
# so CI tests what the image holds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
NLTK_DIR=${NLTK_DIR:-.nltk_data}
PIP=("$VENV/bin/pip" --disable-pip-version-check --quiet)

run() { echo "+ $*"; "$@"; }

run "$PYTHON" -m venv "$VENV"
# Every dependency, test and launcher tools included, exactly as locked.
run "${PIP[@]}" install --require-hashes --no-deps -r requirements.lock
# The project itself, against the environment above (no new resolution, no download).
run "${PIP[@]}" install --no-deps --no-build-isolation -e .
run bash scripts/setup_wordnet.sh "$NLTK_DIR"
touch "$VENV/.installed"
echo "setup done: use $VENV/bin/mgrb, or 'source $VENV/bin/activate'"
