#!/usr/bin/env bash
# Installs the project from its lock (pinned versions, sha256 hashes) into a virtual
# environment, and WordNet for NLTK. `make setup` and the Dockerfile both run exactly this,
# so CI tests what the image holds.
#
# CUDA picks the lock: 13 (the default) is requirements.lock, torch 2.14.1 built for CUDA 13
# (NVIDIA driver R580 or newer); 12 is requirements-cu12.lock, torch 2.10.0 built for CUDA
# 12.8 (driver R525 or newer). The stamp $VENV/.installed names the lock it holds; an
# environment made from the other lock is made afresh rather than mixed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
NLTK_DIR=${NLTK_DIR:-.nltk_data}
CUDA=${CUDA:-13}
case $CUDA in
    13) LOCK=requirements.lock ;;
    12) LOCK=requirements-cu12.lock ;;
    *) echo "setup: CUDA=$CUDA: use 13 (driver R580 or newer, the default) or 12 (driver R525 or newer)" >&2; exit 2 ;;
esac
PIP=("$VENV/bin/pip" --disable-pip-version-check --quiet)

run() { echo "+ $*"; "$@"; }

echo "[1/4] a virtual environment in $VENV (CUDA $CUDA: $LOCK)"
# an empty stamp is from before the variants: requirements.lock
held=$( [[ -f $VENV/.installed ]] && { cat "$VENV/.installed"; echo; } | head -1 || true)
if [[ -f $VENV/.installed ]] && [[ ${held:-requirements.lock} != "$LOCK" ]]; then
    echo "$VENV holds $held: made afresh for $LOCK"
    run "$PYTHON" -m venv --clear "$VENV"
else
    run "$PYTHON" -m venv "$VENV"
fi
rm -f "$VENV/.installed"
# Every dependency, test and launcher tools included, exactly as locked. pip is silent for
# minutes while it unpacks torch and the CUDA wheels, so its output goes through a filter
# that numbers the packages and reports the environment's size as it grows.
packages=$(grep -cE '^[A-Za-z0-9_.-]+==' "$LOCK")
echo "[2/4] $packages locked packages from $LOCK (hashes checked; several GB)"
echo "+ $VENV/bin/pip --disable-pip-version-check install --progress-bar off --require-hashes --no-deps -r $LOCK"
"$VENV/bin/pip" --disable-pip-version-check install --progress-bar off --require-hashes \
    --no-deps -r "$LOCK" 2>&1 \
    | "$PYTHON" scripts/install_progress.py --total "$packages" --watch "$VENV"
# The project itself, against the environment above (no new resolution, no download).
echo "[3/4] the project (editable), against the environment above"
run "${PIP[@]}" install --no-deps --no-build-isolation -e .
echo "[4/4] WordNet for NLTK in $NLTK_DIR"
run bash scripts/setup_wordnet.sh "$NLTK_DIR"
echo "$LOCK" > "$VENV/.installed"
echo "setup done: use $VENV/bin/mgrb, or 'source $VENV/bin/activate'"
