# Every target prints the commands it runs. Outside the container, targets use .venv (made
# by `make setup`); inside the image the environment is already installed.
PYTHON ?= python3
VENV ?= .venv
IMAGE ?= mgrb-artifact
# The version has one source, pyproject.toml (mgrb/version.py reads the same field).
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
EXPERIMENTS ?=
DATA ?= $(CURDIR)/data
# inside the image, the mounted /runs: what a container writes elsewhere dies with it
RUNS ?= $(if $(MGRB_IN_CONTAINER),/runs,$(CURDIR)/runs)
SHM ?= 16g
# CUDA=12: the variant for NVIDIA drivers older than R580 (docs/gpu.md#which-cuda-variant):
# torch 2.10.0 built for CUDA 12.8, from requirements-cu12.lock; 13, torch 2.14.1 from
# requirements.lock. The default is what .venv holds (13 when there is none), so that
# `make setup CUDA=12` is said once; make image CUDA=12 tags the image VERSION-cu12.
HELD_LOCK := $(or $(shell head -1 $(or $(VENV),.venv)/.installed 2>/dev/null),requirements.lock)
CUDA ?= $(if $(filter requirements-cu12.lock,$(HELD_LOCK)),12,13)
ifeq ($(filter 12 13,$(CUDA)),)
$(error CUDA=$(CUDA): use 13 (NVIDIA driver R580 or newer) or 12 (driver R525 or newer))
endif
LOCK := $(if $(filter 12,$(CUDA)),requirements-cu12.lock,requirements.lock)
PINS := requirements/pins$(if $(filter 12,$(CUDA)),-cu12).txt
IMAGE_TAG := $(VERSION)$(if $(filter 12,$(CUDA)),-cu12)

ifdef MGRB_IN_CONTAINER
MGRB := mgrb
PY := python
SETUP :=
# the container's results must land in the mounted /runs to outlive it
GPU_CHECK_ARGS := --out /runs/gpu-check --nvml-out /runs/gpu-check
else
MGRB := $(VENV)/bin/mgrb
PY := $(VENV)/bin/python
SETUP := setup
# results land in the run folders, outside the tracked tree; a maintainer commits a GPU's by
# running `python -m benchmarks.gpu_check` itself (its default: benchmarks/results/)
GPU_CHECK_ARGS := --out $(RUNS)/gpu-check --nvml-out $(RUNS)/gpu-check
endif

# Containers get the data read-only, the run folders writable and this folder's experiment
# files read-only over the image's copy (edited and new files are the ones run); no
# capability, no privilege gain, a pids limit, no network (shell excepted); and run as the
# invoking user, or as the image's user (uid 1000) when make runs as root. GPUS= on a machine
# without GPUs.
GPUS ?= --gpus all
DOCKER_USER := $(if $(filter 0,$(shell id -u)),1000:1000,$(shell id -u):$(shell id -g))
DOCKER_FLAGS = --rm $(GPUS) --shm-size $(SHM) --user $(DOCKER_USER) --cap-drop ALL \
	--security-opt no-new-privileges --pids-limit 4096 \
	-v $(DATA):/data:ro -v $(RUNS):/runs -v $(CURDIR)/experiments:/opt/mgrb/experiments:ro \
	-e MGRB_IMAGE_ID="$$(docker image inspect --format '{{.Id}}' $(IMAGE):$(IMAGE_TAG) 2>/dev/null)"
DOCKER_RUN = docker run $(DOCKER_FLAGS) --network none $(IMAGE):$(IMAGE_TAG)
SOURCE_COMMIT = $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)

.PHONY: help setup test test-fast test-variant kick-the-tires demo demo-ablation demo-record readme data reproduce tui lock image image-test image-folders image-reproduce shell image-tui image-bench lint bench gpu-check image-gpu-check peer-bench dist licenses

help:
	@echo "make setup        .venv with the locked environment, test tools and WordNet data;"
	@echo "                  CUDA=12 for NVIDIA drivers older than R580 (torch 2.10.0, CUDA 12.8)"
	@echo "make test         the whole test suite (runs setup first)"
	@echo "make test-fast    the suite without the end-to-end tests (tests/e2e, marked slow)"
	@echo "make test-variant the tests that exercise torch (CI: under the CUDA 12 variant)"
	@echo "make kick-the-tires  the claims a CPU can show, a verdict each, in under half an hour"
	@echo "make demo         train the offline digits experiment and print its accuracy"
	@echo "make demo-ablation  the digits ablation: 12 settings x 3 seeds on the CPU, table and figure"
	@echo "make demo-record  (maintainers) commit the demo's numbers to docs/results/, README and docs/results.md"
	@echo "make readme       regenerate the measured numbers in README and docs/results.md"
	@echo "make data         fetch CIFAR where the network allows; show the ImageNet layouts"
	@echo "make reproduce    run EXPERIMENTS='names or globs' (default: all with data) and write reports/"
	@echo "make tui          the terminal launcher: pick, launch, watch, check (mgrb tui)"
	@echo "make image        build the container image $(IMAGE):$(IMAGE_TAG) (CUDA=12: the variant for older drivers)"
	@echo "make image-test   build the image from the registries alone and check it offline (root or a Docker daemon)"
	@echo "make image-reproduce  make reproduce inside the image: EXPERIMENTS=..., GPUS= without GPUs"
	@echo "make shell        a shell in the image with GPUs, /data and /runs mounted"
	@echo "make image-tui    the launcher inside the image (local-process mode, GPUs mounted)"
	@echo "make lint         hadolint on the Dockerfile, ruff, and the import contracts between layers"
	@echo "make lock         regenerate requirements.lock (pip-compile, hashes)"
	@echo "make bench        images/s of a training step (fast vs original-style); the ImageNet-100 data path;"
	@echo "                  the step's ATen ops on a simulated CUDA device"
	@echo "make image-bench  the same inside the image on its GPUs; results land in RUNS/.bench"
	@echo "make gpu-check    prove the GPU path here (CPU at a small size without one): runs/gpu-check/"
	@echo "make image-gpu-check  the same inside the image on its GPUs; results land in RUNS/gpu-check"
	@echo "make peer-bench   our replay against Avalanche's on the same protocol (CPU, .venv-peer): benchmarks/results/"
	@echo "make licenses     the third-party license report of this environment: dist/THIRD_PARTY_LICENSES.md"
	@echo "make dist         the release: source archive (TAG=...), saved image, lock, licenses, SHA256SUMS in dist/"

setup: $(VENV)/.installed

# the stamp names the lock it was made from: another CUDA variant makes it out of date
ifneq ($(HELD_LOCK),$(LOCK))
.PHONY: $(VENV)/.installed
endif
$(VENV)/.installed: pyproject.toml $(LOCK) scripts/setup.sh scripts/setup_wordnet.sh \
		scripts/install_progress.py
	CUDA=$(CUDA) VENV=$(VENV) bash scripts/setup.sh

test: $(SETUP)
	$(PY) -m pytest -q

test-fast: $(SETUP)
	$(PY) -m pytest -q -m "not slow"

# The tests that exercise torch's API, for a second environment: CI makes the CUDA 12 variant
# with `make setup CUDA=12 VENV=.venv-cu12` and runs `make test-variant VENV=.venv-cu12`.
VARIANT_TESTS := tests/unit tests/simcuda tests/e2e/test_demo_numbers.py \
	tests/e2e/test_resume_exact.py tests/e2e/test_distributed.py
test-variant: $(SETUP)
	$(PY) -m pytest -q $(VARIANT_TESTS)

# The claims a CPU can show, one after another with a verdict each, and a one-screen summary
# (scripts/kick_the_tires.py; its recorded run: docs/results/kick-the-tires.json, written by
# maintainers with RECORD=docs/results/kick-the-tires.json).
kick-the-tires: $(SETUP)
	$(PY) scripts/kick_the_tires.py --out $(RUNS)/kick-the-tires $(if $(RECORD),--record $(RECORD))

demo: $(SETUP)
	$(MGRB) run experiments/digits_5_1.yaml

# The digits ablation (docs/method.md section 10): every setting of experiments/demo/ over its
# three seeds on the CPU (deterministic there), then a table of mean and std and a figure.
DEMO_ABLATION := digits_replay_keep digits_kd_keep digits_rebalance_keep digits_regularizer_keep \
	digits_mgrb_no_stage2_keep digits_mgrb_keep digits_replay digits_kd digits_rebalance \
	digits_regularizer digits_mgrb_no_stage2 digits_mgrb
DEMO_RUNS ?= $(RUNS)/demo
DEMO_REPORTS ?= $(if $(MGRB_IN_CONTAINER),/runs/reports/demo,$(CURDIR)/reports/demo)

demo-ablation: $(SETUP)
	$(MGRB) --experiments-dir experiments/demo reproduce $(DEMO_ABLATION) --runs-dir $(DEMO_RUNS) \
		--reports-dir $(DEMO_REPORTS) --device cpu
	$(PY) -m mgrb.reporting.ablation --runs-dir $(DEMO_RUNS) --out $(DEMO_REPORTS) $(DEMO_ABLATION)

# Maintainers: after `make demo` and `make demo-ablation`, commit their numbers and let README
# and docs/results.md show them (scripts/readme_figures.py; a test holds both to these files).
demo-record: $(SETUP)
	$(PY) -m mgrb.reporting.ablation --runs-dir $(DEMO_RUNS) --out $(DEMO_REPORTS) \
		--record docs/results/digits-ablation.json $(DEMO_ABLATION)
	cp $(RUNS)/digits_5_1/results.json docs/results/digits_5_1.json
	cp $(DEMO_REPORTS)/ablation.png docs/results/digits-ablation.png
	$(PY) scripts/readme_figures.py

readme: $(SETUP)
	$(PY) scripts/readme_figures.py

# DATA=/x: that folder (it must exist); without it, mgrb data's default ($MGRB_DATA or ./data)
data: $(SETUP)
	$(MGRB) data $(if $(filter command line environment,$(origin DATA)),--root $(DATA))

reproduce: $(SETUP)
	$(MGRB) reproduce $(EXPERIMENTS)

tui: $(SETUP)
	$(MGRB) tui

# pip-compile (pip-tools) resolves pyproject.toml with the test extra under the torch pins
# and records every file's sha256; setup.sh installs with --require-hashes. `make lock CUDA=12`
# makes requirements-cu12.lock with every package outside torch's own stack held at
# requirements.lock's version, so that the two environments differ only in torch and CUDA.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet pip-tools==7.6.2
ifeq ($(CUDA),12)
	grep -E '^[A-Za-z0-9_.-]+==' requirements.lock | sed 's/ .*//' \
		| grep -v -E '^(torch|torchvision|triton|cuda-|nvidia-(cu|nccl|nvjitlink|nvshmem|nvtx))' \
		> .lock-venv/shared-pins.txt
	.lock-venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--extra test --extra tui --constraint $(PINS) --constraint .lock-venv/shared-pins.txt \
		--output-file $(LOCK) pyproject.toml
else
	.lock-venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--extra test --extra tui --constraint $(PINS) --output-file $(LOCK) pyproject.toml
endif

# BASE_IMAGE=... builds on another base than the Dockerfile's pinned one. CUDA=12 builds the
# variant for older drivers, tagged VERSION-cu12 (and latest-cu12).
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg SOURCE_COMMIT=$(SOURCE_COMMIT) --build-arg CUDA=$(CUDA) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE):$(IMAGE_TAG) \
		-t $(IMAGE):latest$(if $(filter 12,$(CUDA)),-cu12) .

# The image built from a stand-in base and the registries, then checked offline as a reviewer
# uses it, with the launcher's Docker mode against it (scripts/image_test.sh).
image-test: $(SETUP)
	bash scripts/image_test.sh

# The folders the containers mount; as root, the runs folder is handed to the image's user.
image-folders:
	mkdir -p $(DATA) $(RUNS)
	@if [ "$$(id -u)" = 0 ] && [ "$$(stat -c %u $(RUNS))" = 0 ]; then \
		echo "chown 1000:1000 $(RUNS)"; chown 1000:1000 $(RUNS); fi

image-reproduce: image-folders
	$(DOCKER_RUN) make reproduce EXPERIMENTS='$(EXPERIMENTS)'

shell: image-folders
	docker run -it $(DOCKER_FLAGS) $(IMAGE):$(IMAGE_TAG) bash

image-tui: image-folders
	docker run -it $(DOCKER_FLAGS) --network none $(IMAGE):$(IMAGE_TAG) mgrb tui

image-bench: image-folders
	$(DOCKER_RUN) make bench

lint: $(SETUP)
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/ruff check mgrb tests scripts $(wildcard artifact benchmarks)
	$(PY) -m pytest -q tests/unit/test_layers.py

# Speed is measured here, never asserted in unit tests. On a GPU: the full table, the
# ImageNet-shaped step included; on a CPU: the same measurements with a few steps (slow, and
# only the ratios are meaningful). Then the data path: the ImageNet-100 cache's prepare rate and
# its loader's images/s. Both write to <runs>/.bench ($MGRB_RUNS, else runs/), where `mgrb list`
# reads the step rates. Last, on any machine, the training step on a simulated CUDA device:
# ATen operations, host reads and blocking copies of a mid-epoch step, in
# benchmarks/results/simulated-cuda-steps.json (benchmarks/simulated_steps.py).
bench: $(SETUP)
	$(PY) -m benchmarks.bench_step
	$(PY) -m benchmarks.bench_data
	$(PY) -m benchmarks.simulated_steps --out benchmarks/results

# The GPU path end to end: numerics matrix, determinism, SIGKILL and resume, the bench table,
# an NVML reading. Without CUDA it runs the same steps on the CPU at a small size and says so.
gpu-check: $(SETUP)
	$(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

image-gpu-check: image-folders
	$(DOCKER_RUN) make gpu-check

# Our plain replay against a maintained peer library's (Avalanche) on the same digits protocol,
# three seeds, on the CPU (7 minutes on the idle two-core machine, over 30 when it is shared).
# Avalanche gets an environment of its own, installed under the torch pins so that both sides run
# the same torch; .venv never sees it.
PEER_VENV := .venv-peer
PEER_BASE_PYTHON := $(if $(MGRB_IN_CONTAINER),python,$(VENV)/bin/python)

peer-bench: $(SETUP) $(PEER_VENV)/.installed
	$(PY) -m benchmarks.peer_replay

$(PEER_VENV)/.installed: requirements/peer.txt $(PINS)
	$(PEER_BASE_PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --constraint $(PINS) -r requirements/peer.txt
	touch $@

# The third-party license report (scripts/license_report.py): the lock's Python packages with
# the licenses pip-licenses reads from this environment, the Debian packages, WordNet.
licenses: $(SETUP)
	$(PY) scripts/license_report.py --out dist/THIRD_PARTY_LICENSES.md

# The release a reviewer downloads (scripts/dist.sh), dist/mgrb-artifact-VERSION-release/: the source
# archive of HEAD (TAG=... for a tag), the image saved where a Docker daemon has it, the lock,
# the license report, .zenodo.json, SHA256SUMS and verify_release.sh. A tree with uncommitted
# changes is refused unless ALLOW_DIRTY=1. Needs the environment of `make setup` (pip-licenses).
dist:
	TAG='$(TAG)' ALLOW_DIRTY='$(ALLOW_DIRTY)' IMAGE_NAME='$(IMAGE)' PYTHON='$(PY)' bash scripts/dist.sh
