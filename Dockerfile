# MGRB reproducibility image: Debian bookworm, Debian's Python 3.11, the project installed from
# requirements.lock by scripts/setup.sh (the same script `make setup` runs), WordNet baked in.
# CUDA comes from the torch wheels (the nvidia-* packages of the lock); the host's NVIDIA
# Container Toolkit mounts the driver. Every input is the base image or a package registry.
# Build: make image (CUDA=12 for drivers older than R580)   Test: make image-test   Run: docs/container.md

# The base by digest, so it never changes under a published image (the tag it was resolved
# from: debian:bookworm-slim).
ARG BASE_IMAGE=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
# The build stage may start from another image, one that trusts a site's HTTPS proxy for pip
# (scripts/image_test.sh makes such a one): only /opt/venv, /opt/nltk_data and /opt/mgrb leave
# that stage, so its certificates never reach the final image.
ARG BUILD_BASE_IMAGE=${BASE_IMAGE}

FROM ${BUILD_BASE_IMAGE} AS build
LABEL org.mgrb.stage="build"
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# wordnet-base and wordnet-sense-index: the WordNet database that setup_wordnet.sh copies. The
# slim image drops man pages, but the script builds NLTK's lexnames file from the table in
# lexnames(5WN), so that one page is let through (into a folder the slim image lacks).
RUN echo 'path-include=/usr/share/man/man5/lexnames.5WN.gz' > /etc/dpkg/dpkg.cfg.d/zz-wordnet-lexnames \
    && mkdir -p /usr/share/man/man5 \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates make python3.11 python3.11-venv \
        wordnet-base wordnet-sense-index \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mgrb
COPY pyproject.toml requirements.lock requirements-cu12.lock README.md Makefile LICENSE CITATION.cff CHANGELOG.md ./
COPY requirements ./requirements
COPY scripts ./scripts
COPY mgrb ./mgrb
COPY artifact ./artifact
COPY experiments ./experiments
COPY benchmarks ./benchmarks
# 13: requirements.lock (torch 2.14.1, CUDA 13, driver R580+); 12: requirements-cu12.lock
# (torch 2.10.0, CUDA 12.8, driver R525+); scripts/setup.sh maps it to the lock. Declared
# here, not above, so that both variants share the cached layers before it.
ARG CUDA=13
# The very commands of `make setup`; then WordNet's license beside its database, since the final
# image has the database but not Debian's wordnet-base package that brought the license.
RUN CUDA=${CUDA} PYTHON=/usr/bin/python3.11 VENV=/opt/venv NLTK_DIR=/opt/nltk_data bash scripts/setup.sh \
    && install -m 644 /usr/share/doc/wordnet-base/copyright /opt/nltk_data/corpora/wordnet/LICENSE

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE_COMMIT=unknown
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="mgrb-artifact" \
      org.opencontainers.image.description="Reproducibility artifact for MGRB (TKDE 2022): class-incremental learning with multi-granularity regularized re-balancing" \
      org.opencontainers.image.source="https://github.com/mgrb-artifact/mgrb-artifact" \
      org.opencontainers.image.revision="${SOURCE_COMMIT}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim" \
      org.opencontainers.image.licenses="MIT"
# The same python3.11 the venv was made with (its bin/python points at /usr/bin/python3.11).
# gcc, g++, libc and Python headers at run time: torch.compile (train.compile: true) builds
# kernels when a run starts, Triton its C launcher (which includes Python.h) on a GPU and
# Inductor's C++ on the CPU; Inductor also calls the openssl command for its cache keys.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 make gcc g++ libc6-dev libpython3.11-dev \
        openssl tini \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 1000 mgrb \
    && useradd --uid 1000 --gid mgrb --create-home --shell /bin/bash mgrb \
    && mkdir -p /data /runs \
    && chown mgrb:mgrb /data /runs
ARG CUDA=13
LABEL org.mgrb.cuda="${CUDA}"
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/nltk_data /opt/nltk_data
COPY --from=build --chown=mgrb:mgrb /opt/mgrb /opt/mgrb
# NVIDIA_*: what the NVIDIA Container Toolkit reads, for `--runtime nvidia` as well as
# `--gpus all`. USER and MPLCONFIGDIR keep torch.compile's cache and matplotlib working
# for a `--user` that has no entry in /etc/passwd.
ENV PATH=/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    MGRB_NLTK_DATA=/opt/nltk_data \
    MGRB_DATA=/data \
    MGRB_RUNS=/runs \
    MGRB_REPORTS=/runs/reports \
    MGRB_IN_CONTAINER=1 \
    PYTHONUNBUFFERED=1 \
    USER=mgrb \
    MPLCONFIGDIR=/tmp/matplotlib \
    MGRB_SOURCE_COMMIT=${SOURCE_COMMIT}
# The third-party licenses of this very image (its Debian packages, every package of the lock,
# WordNet's license, which came along above), by the script behind `make licenses`; the lock
# is the one setup.sh installed (its stamp names it).
RUN python /opt/mgrb/scripts/license_report.py --lock "/opt/mgrb/$(head -1 /opt/venv/.installed)" \
        --out /opt/mgrb/THIRD_PARTY_LICENSES.md
USER 1000:1000
WORKDIR /opt/mgrb
VOLUME ["/data", "/runs"]
# tini as pid 1: it forwards docker stop's SIGTERM to the run (which saves a checkpoint) and
# reaps data loader workers; mgrb itself refuses to be pid 1, whose run.lock would name it.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["mgrb", "quickstart"]
