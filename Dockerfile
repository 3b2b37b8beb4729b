# syntax=docker/dockerfile:1
# MGRB reproducibility image: CUDA runtime + cuDNN, Python 3.11, the project installed from
# requirements.lock by scripts/setup.sh (the same script `make setup` runs), WordNet baked in.
# Build: make image        Run: see README, "Container".

# The base is named by tag; README says how to pin it by digest for a release.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.7

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION=3.11.7
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# wordnet-base and wordnet-sense-index: the WordNet database that setup_wordnet.sh copies. The
# minimal Ubuntu image drops man pages, but the script builds NLTK's lexnames file from the
# table in lexnames(5WN), so that one page is let through.
RUN echo 'path-include=/usr/share/man/man5/lexnames.5WN.gz' > /etc/dpkg/dpkg.cfg.d/zz-wordnet-lexnames \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates make wordnet-base wordnet-sense-index \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
# A relocatable CPython of exactly the version CI tests with.
RUN uv python install "${PYTHON_VERSION}" \
    && ln -s "$(uv python find "${PYTHON_VERSION}")" /opt/python/python3
WORKDIR /opt/mgrb
COPY pyproject.toml requirements.lock README.md Makefile ./
COPY requirements ./requirements
COPY scripts ./scripts
COPY mgrb ./mgrb
COPY artifact ./artifact
COPY experiments ./experiments
COPY benchmarks ./benchmarks
# The very commands of `make setup`.
RUN PYTHON=/opt/python/python3 VENV=/opt/venv NLTK_DIR=/opt/nltk_data bash scripts/setup.sh

FROM ${CUDA_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mgrb-artifact" \
      org.opencontainers.image.description="Reproducibility artifact for MGRB (TKDE 2022): class-incremental learning with multi-granularity regularized re-balancing" \
      org.opencontainers.image.source="https://github.com/mgrb-artifact/mgrb-artifact" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
# gcc and g++ at run time: torch.compile (train.compile: true) builds kernels when a run
# starts, Triton its C launcher on a GPU and Inductor C++ on the CPU.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 mgrb \
    && useradd --uid 1000 --gid mgrb --create-home --shell /bin/bash mgrb \
    && mkdir -p /data /runs \
    && chown mgrb:mgrb /data /runs
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/nltk_data /opt/nltk_data
COPY --from=build --chown=mgrb:mgrb /opt/mgrb /opt/mgrb
ENV PATH=/opt/venv/bin:$PATH \
    MGRB_NLTK_DATA=/opt/nltk_data \
    MGRB_DATA=/data \
    MGRB_RUNS=/runs \
    MGRB_REPORTS=/runs/reports \
    MGRB_IN_CONTAINER=1 \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /opt/mgrb
VOLUME ["/data", "/runs"]
CMD ["mgrb", "quickstart"]
