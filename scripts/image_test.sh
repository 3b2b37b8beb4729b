#!/usr/bin/env bash
# make image-test: build the real Dockerfile and check the image as a reviewer uses it.
#
# Needs only the package registries: a Docker daemon is started here when none answers
# (Debian's docker.io, installed when missing), and the base image is a stand-in made with
# debootstrap from this host's Debian sources (image registries need not be reachable). The
# checks run offline (--network none), as uid 1000 with /data read-only and /runs writable.
# At the end the daemon this script started is stopped (by its pid) and everything it built
# is removed. Prints the build time, the image size and each check's result; exits 1 when a
# check failed, 2 when the image could not be tested at all.
#
# Environment: IMAGE_TEST_BASE=pinned builds from the Dockerfile's own pinned base (needs a
# registry) instead of the stand-in; IMAGE_TEST_KEEP=1 keeps the image and its daemon's data
# for a look afterwards (the folder is printed); IMAGE_TEST_PYTHON is the Python with the test
# tools (default .venv/bin/python, as `make setup` makes it); IMAGE_TEST_CUDA12 says how much
# of the CUDA 12 variant (make image CUDA=12) is built and checked: full (the whole image),
# stage (its build stage, where setup.sh installs requirements-cu12.lock), auto (the default:
# full when the disk has room for it, else stage) or 0 (none of it).
set -euo pipefail

# All of it in one function, read whole before it runs: bash reads a script as it goes, so an
# edit during the quarter of an hour this takes would otherwise change what runs.
main() {
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${IMAGE_TEST_PYTHON:-$ROOT/.venv/bin/python}
BASE_MODE=${IMAGE_TEST_BASE:-stand-in}
KEEP=${IMAGE_TEST_KEEP:-0}
CUDA12=${IMAGE_TEST_CUDA12:-auto}
SUITE=bookworm
TAG=$$
IMAGE=mgrb-artifact-image-test
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
DIST_CHECK=mgrb-dist-check-$$:$VERSION
STAND_IN=mgrb-stand-in-base
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown ]] && ! git diff --quiet HEAD 2>/dev/null; then COMMIT+=-dirty; fi

say() { echo "image-test: $*"; }
die() { echo "image-test: $*" >&2; exit 2; }
elapsed() { echo $(( $(date +%s) - $1 )); }
[[ $BASE_MODE == stand-in || $BASE_MODE == pinned ]] || die "IMAGE_TEST_BASE: stand-in or pinned, not '$BASE_MODE'"
[[ $CUDA12 == 1 ]] && CUDA12=auto
[[ $CUDA12 =~ ^(auto|full|stage|0)$ ]] || die "IMAGE_TEST_CUDA12: auto, full, stage or 0, not '$CUDA12'"

# -- the results table --------------------------------------------------------------------
RESULTS=()
FAILED=0
record() {  # record PASS|FAIL "name" "detail"
    RESULTS+=("$(printf '%-4s  %-44s %s' "$1" "$2" "$3")")
    [[ $1 == PASS ]] || FAILED=$((FAILED + 1))
    printf 'image-test: %-4s %s %s\n' "$1" "$2" "${3:+($3)}"
}

# -- tools and the daemon -------------------------------------------------------------------
need_packages=()
command -v docker >/dev/null || need_packages+=(docker.io)
if [[ $BASE_MODE == stand-in ]]; then command -v debootstrap >/dev/null || need_packages+=(debootstrap); fi
if ! docker info >/dev/null 2>&1; then command -v dockerd >/dev/null || need_packages+=(docker.io); fi
if (( ${#need_packages[@]} )); then
    [[ $(id -u) -eq 0 ]] || die "needs ${need_packages[*]} (Debian packages) and is not root: install them, then run again"
    say "installing ${need_packages[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi
[[ -x $PYTHON ]] || die "no $PYTHON: run 'make setup' first (the launcher's Docker tests need it)"

WORK=$(mktemp -d /var/tmp/mgrb-image-test.XXXXXX)
remove_containers() {  # the test's own and any of the CUDA 13 image
    docker ps -aq --filter "label=org.mgrb.image-test=$TAG" | xargs -r docker rm -f >/dev/null 2>&1
    docker ps -aq --filter "ancestor=$IMAGE:$TAG" | xargs -r docker rm -f >/dev/null 2>&1
}
DAEMON_PID=
cleanup() {
    local status=$?
    set +e
    if [[ $KEEP == 1 ]]; then
        say "kept: image $IMAGE:$TAG, work folder $WORK${DAEMON_PID:+, daemon pid $DAEMON_PID (DOCKER_HOST=$DOCKER_HOST)}"
        exit $status
    fi
    say "cleaning up"
    remove_containers
    docker rmi -f "$IMAGE:$TAG" "$IMAGE:$TAG-cu12" "$IMAGE:$TAG-shared1" "$IMAGE:$TAG-shared2" "$STAND_IN:$TAG" "$STAND_IN:$TAG-build" "$DIST_CHECK" >/dev/null 2>&1
    docker image prune -f --filter "label=org.mgrb.stage=build" >/dev/null 2>&1
    if [[ -n $DAEMON_PID ]]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 600); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$DAEMON_PID" 2>/dev/null && { say "the daemon did not stop in 60 s; killing it"; kill -KILL "$DAEMON_PID"; }
        # overlay mounts of a daemon that died badly would keep its folder busy
        grep -o " $WORK/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    fi
    # the run folders were written by uid 1000 inside the containers
    rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if docker info >/dev/null 2>&1; then
    say "using the Docker daemon that answers at ${DOCKER_HOST:-the default socket}"
else
    [[ $(id -u) -eq 0 ]] || die "no Docker daemon answers and only root can start one: start Docker, then run again"
    export DOCKER_HOST=unix://$WORK/docker.sock
    # No bridge and no iptables: containers run with --network none, builds with --network host.
    dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none \
        --data-root "$WORK/docker" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
        --host "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
    DAEMON_PID=$!
    started=$(date +%s)
    until docker info >/dev/null 2>&1; do
        kill -0 "$DAEMON_PID" 2>/dev/null || { tail -5 "$WORK/dockerd.log" >&2; DAEMON_PID=; die "dockerd exited (log above)"; }
        (( $(elapsed "$started") < 60 )) || { tail -5 "$WORK/dockerd.log" >&2; die "dockerd did not answer in 60 s"; }
        sleep 0.1
    done
    say "started dockerd (pid $DAEMON_PID) at $DOCKER_HOST in $(elapsed "$started") s"
fi

# -- the base -----------------------------------------------------------------------------
build_args=(--build-arg "SOURCE_COMMIT=$COMMIT")
SITE_CAS=(/usr/local/share/ca-certificates/*.crt)
[[ -e ${SITE_CAS[0]} ]] || SITE_CAS=()
if [[ $BASE_MODE == stand-in ]]; then
    started=$(date +%s)
    # The host's Debian mirror (deb822 sources first, then sources.list), as its apt uses it.
    MIRROR=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [[ -n $MIRROR ]] || MIRROR=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    say "stand-in base: debootstrap --variant=minbase $SUITE from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -5 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    # Like the slim image: no documentation, manuals or translations, no package caches.
    cat >"$WORK/rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    if ls /etc/apt/sources.list.d/debian.sources >/dev/null 2>&1; then
        cp /etc/apt/sources.list.d/debian.sources "$WORK/rootfs/etc/apt/sources.list.d/debian.sources"
        rm -f "$WORK/rootfs/etc/apt/sources.list"
    fi
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/* \
        "$WORK"/rootfs/usr/share/doc "$WORK"/rootfs/usr/share/locale "$WORK"/rootfs/usr/share/man
    tar -C "$WORK/rootfs" -c . | docker import - "$STAND_IN:$TAG" >/dev/null
    rm -rf "$WORK/rootfs"
    build_args+=(--build-arg "BASE_IMAGE=$STAND_IN:$TAG" --build-arg "BUILD_BASE_IMAGE=$STAND_IN:$TAG")
    if (( ${#SITE_CAS[@]} )); then
        # This site inspects HTTPS: pip in the build stage must trust its authority. Only the
        # build stage starts from this image; the final stage starts from the plain one.
        mkdir -p "$WORK/build-base/cas"
        cp "${SITE_CAS[@]}" "$WORK/build-base/cas/"
        cat >"$WORK/build-base/Dockerfile" <<EOF
FROM $STAND_IN:$TAG
COPY cas/ /usr/local/share/ca-certificates/
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
EOF
        DOCKER_BUILDKIT=0 docker build -q --network host -t "$STAND_IN:$TAG-build" "$WORK/build-base" \
            >"$WORK/build-base.log" 2>&1 || { tail -5 "$WORK/build-base.log" >&2; die "the build base failed (log above)"; }
        build_args+=(--build-arg "BUILD_BASE_IMAGE=$STAND_IN:$TAG-build")
        say "build stage trusts this site's ${#SITE_CAS[@]} certificate authorities (final stage does not)"
    fi
    say "stand-in base ready in $(elapsed "$started") s"
fi

# -- the build ----------------------------------------------------------------------------
say "building $IMAGE:$TAG from the Dockerfile (classic builder, --network host); log: $WORK/build.log"
started=$(date +%s)
if DOCKER_BUILDKIT=0 docker build --network host "${build_args[@]}" -t "$IMAGE:$TAG" . >"$WORK/build.log" 2>&1; then
    BUILD_S=$(elapsed "$started")
    record PASS "docker build" "$BUILD_S s"
else
    tail -25 "$WORK/build.log" >&2
    record FAIL "docker build" "log above"
    exit 1
fi

SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE:$TAG")
# What the environment itself takes: the floor under the image's size.
VENV_BYTES=$(docker run --rm --network none "$IMAGE:$TAG" du -sb /opt/venv | cut -f1)
gb() { awk -v b="$1" 'BEGIN {printf "%.2f GB", b / 1e9}'; }
OVERHEAD=$((SIZE - VENV_BYTES))
if (( OVERHEAD < 1000000000 )); then
    record PASS "image size near the venv's floor" "image $(gb "$SIZE"), /opt/venv $(gb "$VENV_BYTES"), rest $(gb "$OVERHEAD")"
else
    record FAIL "image size near the venv's floor" "image $(gb "$SIZE"), /opt/venv $(gb "$VENV_BYTES"), rest $(gb "$OVERHEAD") (over 1 GB)"
fi

labels=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}} {{index .Config.Labels "org.mgrb.stage"}}' "$IMAGE:$TAG")
if [[ $labels == "$COMMIT " ]]; then
    record PASS "OCI labels name the source commit" "$COMMIT"
else
    record FAIL "OCI labels name the source commit" "revision and stage labels: '$labels', expected '$COMMIT '"
fi

# -- nothing of the build in the final image ------------------------------------------------
# The site's certificates by content (a PEM body is one base64 block), wherever they might be.
leaks=$(
    {
        docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE:$TAG" | grep -E '^(PIP_CERT|PIP_INDEX|PIP_EXTRA)' || true
        docker run --rm --network none --user 0:0 "$IMAGE:$TAG" sh -c '
            ls -A /usr/local/share/ca-certificates /root/.cache/pip /var/lib/apt/lists /var/cache/apt/archives \
                /etc/dpkg/dpkg.cfg.d/zz-wordnet-lexnames /usr/share/wordnet 2>/dev/null \
                | grep -vE "^(|lock|partial|/[^:]*:)$" | sed "s/^/build-only: /"'
        for ca in "${SITE_CAS[@]}"; do
            body=$(grep -v -- '-----' "$ca" | tr -d '\n' | cut -c101-164)
            docker run --rm --network none --user 0:0 "$IMAGE:$TAG" sh -c \
                "grep -rlsF -- '$body' /etc/ssl /usr/local/share /opt/venv/lib/python3.11/site-packages/certifi 2>/dev/null" \
                | sed "s|^|site certificate $(basename "$ca") in |" || true
        done
    } 2>&1
)
if [[ -z $leaks ]]; then
    record PASS "no build-only file or site certificate" "${#SITE_CAS[@]} site CAs looked for"
else
    echo "$leaks" | head -10 >&2
    record FAIL "no build-only file or site certificate" "$(echo "$leaks" | wc -l) found (above)"
fi

# -- the image at work, offline, unprivileged ---------------------------------------------
RUNS=$WORK/runs
DATA=$WORK/data
mkdir -p "$RUNS" "$DATA"
chown 1000:1000 "$RUNS" 2>/dev/null || chmod 777 "$RUNS"
SAFE=(--rm --network none --cap-drop ALL --security-opt no-new-privileges --pids-limit 4096
      --label "org.mgrb.image-test=$TAG")
MOUNTS=(-v "$DATA:/data:ro" -v "$RUNS:/runs" -v "$ROOT/experiments:/opt/mgrb/experiments:ro")

in_image() {  # in_image NAME EXPECTED-TEXT docker-run-arguments... : passes on exit 0 and the text seen
    local name=$1 expected=$2 log started
    shift 2
    log=$WORK/$(echo "$name" | tr -c 'a-z0-9\n' '-').log
    started=$(date +%s)
    if docker run "${SAFE[@]}" "$@" >"$log" 2>&1 && grep -qF -- "$expected" "$log"; then
        record PASS "$name" "$(elapsed "$started") s"
    else
        tail -15 "$log" >&2
        record FAIL "$name" "no '$expected' (log above)"
    fi
}

in_image "mgrb quickstart" "make image-reproduce" --user 1000:1000 "$IMAGE:$TAG" mgrb quickstart
in_image "mgrb list" "digits_5_1" --user 1000:1000 "${MOUNTS[@]}" "$IMAGE:$TAG" mgrb list
# gcc, g++, libc and Python headers and openssl, as torch.compile uses them, for a user
# that has no passwd entry (the launcher runs containers as the invoking user).
in_image "torch.compile on the CPU as uid 4321" "compiled ok" --user 4321:4321 "$IMAGE:$TAG" \
    python -c "import torch; f = torch.compile(lambda x: x.sin() + 1); assert f(torch.zeros(3)).eq(1).all(); print('compiled ok')"
in_image "/data is read-only, /runs writable" "mounts ok" --user 1000:1000 "${MOUNTS[@]}" "$IMAGE:$TAG" \
    sh -c '! touch /data/x 2>/dev/null && ! touch /opt/mgrb/experiments/x 2>/dev/null && touch /runs/x && rm /runs/x && echo mounts ok'

in_image "make demo (uid 1000)" "average incremental top-1" --user 1000:1000 "${MOUNTS[@]}" "$IMAGE:$TAG" make demo
if [[ -s $RUNS/digits_5_1/results.json && $(stat -c %u "$RUNS/digits_5_1/results.json") == 1000 ]]; then
    record PASS "results.json on the host" "$(grep -o 'average incremental top-1 [0-9.]*' "$WORK/make-demo--uid-1000-.log" | tail -1)"
else
    record FAIL "results.json on the host" "no $RUNS/digits_5_1/results.json owned by uid 1000"
fi

# The documented line (docs/container.md): make image-reproduce, without --gpus on a CPU machine.
started=$(date +%s)
rm -rf "$RUNS/digits_5_1"
if make --no-print-directory image-reproduce GPUS= IMAGE="$IMAGE" VERSION="$TAG" DATA="$DATA" RUNS="$RUNS" \
        EXPERIMENTS=digits_5_1 >"$WORK/reproduce.log" 2>&1 && ls "$RUNS"/reports/*.md >/dev/null 2>&1; then
    record PASS "make image-reproduce EXPERIMENTS=digits_5_1" "$(elapsed "$started") s, report in runs/reports"
else
    tail -15 "$WORK/reproduce.log" >&2
    record FAIL "make image-reproduce EXPERIMENTS=digits_5_1" "log above"
fi

# -- what the image says about itself -------------------------------------------------------
IMAGE_ID=$(docker image inspect --format '{{.Id}}' "$IMAGE:$TAG")
if grep -qF "\"image\": \"$IMAGE_ID\"" "$RUNS/digits_5_1/results.json" 2>/dev/null; then
    record PASS "results.json records the image id" "${IMAGE_ID:7:12}"
else
    record FAIL "results.json records the image id" "no \"image\": \"$IMAGE_ID\" in $RUNS/digits_5_1/results.json"
fi
in_image "mgrb --version names the commit" "commit $COMMIT" --user 1000:1000 "$IMAGE:$TAG" mgrb --version
docker run "${SAFE[@]}" "$IMAGE:$TAG" cat /opt/mgrb/THIRD_PARTY_LICENSES.md >"$WORK/licenses.md" 2>&1 || true
if "$PYTHON" scripts/license_report.py --check "$WORK/licenses.md" >/dev/null 2>&1 \
        && grep -q '^## Debian packages ([1-9]' "$WORK/licenses.md" && grep -qF 'WordNet 3.0 Copyright' "$WORK/licenses.md" \
        && docker run "${SAFE[@]}" "$IMAGE:$TAG" test -s /opt/mgrb/LICENSE; then
    record PASS "LICENSE and the license report in the image" "$(grep -o '^## Debian packages ([0-9]*' "$WORK/licenses.md" | grep -o '[0-9]*$') Debian packages, every locked one"
else
    head -5 "$WORK/licenses.md" >&2
    record FAIL "LICENSE and the license report in the image" "report incomplete or missing (above)"
fi

# make dist's image part on a tiny image that carries the real report (saving the 6.7 GB image
# would take minutes here): docker save, then untag it, and verify_release.sh loads it back. In a
# clone whose HEAD is this work tree, so that uncommitted changes are what is archived and tested.
started=$(date +%s)
git clone -q "$ROOT" "$WORK/clone"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    if [[ -f $file ]]; then mkdir -p "$WORK/clone/$(dirname "$file")"; cp -p "$file" "$WORK/clone/$file"
    else rm -f "$WORK/clone/$file"; fi
done
git -C "$WORK/clone" add -A
git -C "$WORK/clone" -c user.name=image-test -c user.email=image-test@localhost commit -q --allow-empty -m "work tree"
mkdir -p "$WORK/dist-image/opt/mgrb"
cp "$WORK/licenses.md" "$WORK/dist-image/opt/mgrb/THIRD_PARTY_LICENSES.md"
tar -C "$WORK/dist-image" -c . | docker import \
    --change "LABEL org.opencontainers.image.revision=$(git -C "$WORK/clone" rev-parse HEAD)" \
    --change 'CMD ["/none"]' - "$DIST_CHECK" >/dev/null
if DIST_DIR=$WORK/dist IMAGE_NAME=${DIST_CHECK%:*} PYTHON=$PYTHON bash "$WORK/clone/scripts/dist.sh" >"$WORK/dist.log" 2>&1 \
        && docker rmi "$DIST_CHECK" >/dev/null \
        && bash "$WORK/dist/mgrb-artifact-$VERSION-release/verify_release.sh" --unpack-to "$WORK/unpacked" >>"$WORK/dist.log" 2>&1 \
        && grep -q "image: $DIST_CHECK loaded, id sha256:.* as recorded" "$WORK/dist.log"; then
    record PASS "make dist saves an image, verify_release.sh loads it" "$(elapsed "$started") s, a tiny image"
else
    tail -15 "$WORK/dist.log" >&2
    record FAIL "make dist saves an image, verify_release.sh loads it" "log above"
fi

# -- the launcher's Docker mode against this daemon and image -------------------------------
started=$(date +%s)
if MGRB_IMAGE_TEST_IMAGE="$IMAGE:$TAG" MGRB_IMAGE_TEST_LABEL="$TAG" \
        "$PYTHON" -m pytest -q -p no:cacheprovider tests/image >"$WORK/launcher.log" 2>&1; then
    record PASS "launcher Docker mode (tests/image)" "$(elapsed "$started") s, $(tail -1 "$WORK/launcher.log" | tr -d '=' | xargs)"
else
    tail -30 "$WORK/launcher.log" >&2
    record FAIL "launcher Docker mode (tests/image)" "log above"
fi

# -- the CUDA 12 variant: built the same way, then what differs checked (its torch, its CUDA,
# its license report against its own lock); the rest of it is the same code and the same
# layers, and `make test-variant` runs the tests under that torch outside the image.
#
# A build holds several copies of the venv at its peak (a step's container and the layer
# committed from it, for COPY --from the source layer too). Measured here by free space every
# 5 s (2026-12-07): the CUDA 13 image 25.6 to 27.4 GB at the peak, 4.0 to 4.3 times its 6.4 GB
# venv; the whole CUDA 12 image 31.5 GB, 3.9 times its 8.0 GB venv; its build stage alone 24
# GB. More than some CI disks had left (CI failed twice with "no space left on device"), so:
# the CUDA 13 image's own layers go first (each stage's steps up to its `ARG CUDA` are tagged,
# so they stay cached), and where the disk still lacks room for the whole image, only its build
# stage, where setup.sh installs requirements-cu12.lock, is built and checked; the final
# stage's steps are the ones the CUDA 13 image passed above, with a larger venv copied in.
shared_step_ids() {  # the image id of each `ARG CUDA` step in a classic builder's log
    awk '/^Step [0-9]+\/[0-9]+ : /{ if (arg && id) print id; arg = ($0 ~ / : ARG CUDA=/); id = ""; next }
         /^ ---> [0-9a-f]+$/ { id = $2 }
         END { if (arg && id) print id }' "$1"
}
drop_cuda13_image() {  # sets KEPT: how many shared steps stay cached
    local id
    KEPT=0
    while read -r id; do
        KEPT=$((KEPT + 1))
        docker tag "$id" "$IMAGE:$TAG-shared$KEPT"
    done < <(shared_step_ids "$WORK/build.log")
    remove_containers
    docker rmi "$IMAGE:$TAG" >/dev/null || say "could not remove $IMAGE:$TAG; building beside it"
    docker image prune -f --filter "label=org.mgrb.stage=build" >/dev/null || true
}
free_bytes() { df -B1 --output=avail "$WORK" | awk 'NR == 2 {print $1}'; }
disk_left() { gb "$(free_bytes)"; }

if [[ $CUDA12 != 0 ]]; then
    before=$(disk_left)
    drop_cuda13_image
    say "CUDA 13 image removed, its $KEPT steps shared with CUDA 12 kept: $before -> $(disk_left) free"
    # 4.5 venvs of 1.3 times the CUDA 13 one's size (37 GB): the ratios above, rounded up.
    full_need=$(awk -v v="$VENV_BYTES" 'BEGIN {printf "%.0f", 4.5 * 1.3 * v}')
    if [[ $CUDA12 == auto ]]; then
        if (( $(free_bytes) >= full_need )); then CUDA12=full; else CUDA12=stage; fi
        say "the whole CUDA 12 image needs about $(gb "$full_need") free at its peak, $(disk_left) is: building $([[ $CUDA12 == full ]] && echo the whole image || echo its build stage only)"
    fi
    cu12_image=$IMAGE:$TAG-cu12
    target=() run_env=() venv_bin=
    what="docker build CUDA=12"
    if [[ $CUDA12 == stage ]]; then
        # The build stage has the venv but not the final stage's PATH, user or environment.
        target=(--target build) venv_bin=/opt/venv/bin/
        run_env=(-e MGRB_NLTK_DATA=/opt/nltk_data -e MGRB_DATA=/data -e MGRB_RUNS=/runs)
        what="docker build CUDA=12 --target build"
    fi
    say "building $cu12_image (CUDA=12${target[*]:+, ${target[*]}}); log: $WORK/build-cu12.log"
    started=$(date +%s)
    if DOCKER_BUILDKIT=0 docker build --network host "${build_args[@]}" --build-arg CUDA=12 "${target[@]}" \
            -t "$cu12_image" . >"$WORK/build-cu12.log" 2>&1; then
        record PASS "$what" "$(elapsed "$started") s, image $(gb "$(docker image inspect -f '{{.Size}}' "$cu12_image")"), $(disk_left) left on the disk"
        in_image "CUDA 12 variant: torch 2.10.0 built for CUDA 12.8" "2.10.0+cu128 12.8 12" --user 1000:1000 \
            "$cu12_image" ${venv_bin}python -c "import os, torch; print(torch.__version__, torch.version.cuda, open('/opt/venv/.installed').read().strip() == 'requirements-cu12.lock' and 12)"
        if [[ $CUDA12 == full ]]; then
            docker run "${SAFE[@]}" "$cu12_image" cat /opt/mgrb/THIRD_PARTY_LICENSES.md >"$WORK/licenses-cu12.md" 2>&1 || true
        else  # the final stage's own command, in the build stage
            docker run "${SAFE[@]}" --user 1000:1000 "$cu12_image" ${venv_bin}python scripts/license_report.py \
                --lock "$(docker run "${SAFE[@]}" "$cu12_image" head -1 /opt/venv/.installed)" >"$WORK/licenses-cu12.md" 2>"$WORK/licenses-cu12.err" || true
        fi
        if "$PYTHON" scripts/license_report.py --check "$WORK/licenses-cu12.md" --lock requirements-cu12.lock >/dev/null 2>&1; then
            record PASS "CUDA 12 variant: license report of its own lock" "every package of requirements-cu12.lock"
        else
            record FAIL "CUDA 12 variant: license report of its own lock" "$("$PYTHON" scripts/license_report.py --check "$WORK/licenses-cu12.md" --lock requirements-cu12.lock 2>&1 | cut -c1-200)"
        fi
        in_image "CUDA 12 variant: mgrb list" "digits_5_1" --user 1000:1000 "${MOUNTS[@]}" "${run_env[@]}" "$cu12_image" ${venv_bin}mgrb list
        docker rmi -f "$cu12_image" >/dev/null 2>&1
    else
        tail -25 "$WORK/build-cu12.log" >&2
        record FAIL "$what" "log above; $(disk_left) left on the disk"
    fi
fi

echo
echo "image-test summary (commit $COMMIT, base: $BASE_MODE)"
printf '  %s\n' "${RESULTS[@]}"
echo "  build $BUILD_S s, image $(gb "$SIZE") ($IMAGE:$TAG)"
(( FAILED == 0 )) || { echo "image-test: $FAILED check(s) failed"; exit 1; }
echo "image-test: all checks passed"
}

main "$@"
