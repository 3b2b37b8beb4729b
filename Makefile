# Every target prints the commands it runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXPERIMENT ?= experiments/digits_5_1.yaml

.PHONY: setup test demo clean-runs help

help:
	@echo "make setup   create .venv with the project, test tools and WordNet data"
	@echo "make test    run the whole test suite (runs setup first)"
	@echo "make demo    train the offline digits experiment and print its accuracies"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh scripts/setup_wordnet.sh
	bash scripts/setup.sh

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/mgrb run $(EXPERIMENT)
