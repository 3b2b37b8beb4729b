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

echo "[1/4] a virtual environment in $VENV"
run "$PYTHON" -m venv "$VENV"
# Every dependency, test and launcher tools included, exactly as locked. pip is silent for
# minutes while it unpacks torch and the CUDA wheels, so its output goes through a filter
# that numbers the packages and reports the environment's size as it grows.
packages=$(grep -cE '^[A-Za-z0-9_.-]+==' requirements.lock)
echo "[2/4] $packages locked packages from requirements.lock (hashes checked; several GB)"
echo "+ $VENV/bin/pip --disable-pip-version-check install --progress-bar off --require-hashes --no-deps -r requirements.lock"
"$VENV/bin/pip" --disable-pip-version-check install --progress-bar off --require-hashes \
    --no-deps -r requirements.lock 2>&1 \
    | "$PYTHON" scripts/install_progress.py --total "$packages" --watch "$VENV"
# The project itself, against the environment above (no new resolution, no download).
echo "[3/4] the project (editable), against the environment above"
run "${PIP[@]}" install --no-deps --no-build-isolation -e .
echo "[4/4] WordNet for NLTK in $NLTK_DIR"
run bash scripts/setup_wordnet.sh "$NLTK_DIR"
touch "$VENV/.installed"
echo "setup done: use $VENV/bin/mgrb, or 'source $VENV/bin/activate'"
