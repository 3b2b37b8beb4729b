#!/usr/bin/env bash
# Creates .venv with the project and its test extras, and WordNet for NLTK in .nltk_data.
# `make setup` runs this; so will the container build, so the two cannot drift.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# torch and torchvision pinned together: torchvision's compiled operators match one torch.
TORCH_PINS=${TORCH_PINS:-"torch==2.14.1 torchvision==0.29.1"}

echo "+ $PYTHON -m venv $VENV"
"$PYTHON" -m venv "$VENV"
echo "+ $VENV/bin/pip install $TORCH_PINS"
"$VENV/bin/pip" install --quiet --disable-pip-version-check $TORCH_PINS
echo "+ $VENV/bin/pip install -e .[test]"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[test]"
echo "+ scripts/setup_wordnet.sh .nltk_data"
bash scripts/setup_wordnet.sh .nltk_data
touch "$VENV/.installed"
echo "setup done: activate with 'source $VENV/bin/activate' or use $VENV/bin/mgrb"
