#!/usr/bin/env bash
# make dist: the release a reviewer downloads, in dist/mgrb-artifact-VERSION-release/:
#   mgrb-artifact-VERSION-source.tar.gz   git archive of HEAD (or of TAG), with a SOURCE_COMMIT file
#   mgrb-artifact-VERSION-image.tar.gz    docker save of the image, where a daemon has one (IMAGE_ID: its id)
#   requirements.lock, LICENSE, CITATION.cff, .zenodo.json    from the archived tree
#   THIRD_PARTY_LICENSES.md               the image's own report, else one made here (license_report.py)
#   RELEASE.json                          version, commit, tag, what was left out and why
#   verify_release.sh                     checks all of the above against SHA256SUMS
#   SHA256SUMS                            over every other file
#
# Environment: TAG (a tag to archive instead of HEAD), ALLOW_DIRTY=1 (archive HEAD although the
# tree has uncommitted changes, which the archive then lacks), SKIP_IMAGE=1, IMAGE_NAME (default
# mgrb-artifact), DIST_DIR (default dist), PYTHON (the environment with pip-licenses, default
# .venv/bin/python). Exit 2 when no release could be made.
set -euo pipefail

main() {
cd "$(dirname "$0")/.."
started=$(date +%s)
say() { echo "dist: $*"; }
die() { echo "dist: error: $*" >&2; exit 2; }

TAG=${TAG:-}
PYTHON=${PYTHON:-.venv/bin/python}
DIST_DIR=${DIST_DIR:-dist}
IMAGE_NAME=${IMAGE_NAME:-mgrb-artifact}

git rev-parse --git-dir >/dev/null 2>&1 || die "not a git checkout: the source archive is made by git archive"
if [[ -n $TAG ]]; then
    git rev-parse --verify --quiet "refs/tags/$TAG" >/dev/null || die "TAG=$TAG: no such tag (git tag lists them)"
    REF=$TAG
else
    REF=HEAD
fi
COMMIT=$(git rev-parse --verify "$REF^{commit}")
DIRTY=false
if [[ $REF == HEAD && -n $(git status --porcelain --untracked-files=no) ]]; then
    [[ ${ALLOW_DIRTY:-} == 1 ]] || die "the work tree has uncommitted changes (git status); a release archives a commit: commit them, or ALLOW_DIRTY=1 to archive $REF without them"
    DIRTY=true
    say "ALLOW_DIRTY=1: the archive holds $REF as committed; the uncommitted changes are not in it"
fi
VERSION=$(git show "$COMMIT:pyproject.toml" | sed -n 's/^version = "\(.*\)"$/\1/p')
[[ -n $VERSION ]] || die "$REF's pyproject.toml has no version line"
[[ -z $TAG || $TAG == *"$VERSION"* ]] || say "warning: TAG=$TAG does not name version $VERSION"
for file in scripts/verify_release.sh LICENSE CITATION.cff .zenodo.json requirements.lock; do
    git cat-file -e "$COMMIT:$file" 2>/dev/null || die "$REF has no $file (the release needs it)"
done
links=$(git ls-tree -r --full-tree "$COMMIT" | awk -F'\t' '$1 ~ /^120000 / && n++ < 3 {print $2}' | paste -sd' ')
[[ -z $links ]] || die "$REF holds symbolic links ($links): verify_release.sh refuses every link in the source archive"
[[ -x $PYTHON ]] || die "no $PYTHON: run 'make setup' first (the license report reads the installed packages), or set PYTHON"

NAME=mgrb-artifact-$VERSION
OUT=$DIST_DIR/$NAME-release
WORK=$OUT.partial
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
say "release $NAME of $REF (commit $COMMIT) into $OUT"

# The virtual file before --prefix: git versions differ in whether a prefix given earlier applies.
git archive --format=tar --add-virtual-file="$NAME/SOURCE_COMMIT:$COMMIT" --prefix="$NAME/" "$COMMIT" \
    | gzip -n -9 >"$WORK/$NAME-source.tar.gz"
say "source: $NAME-source.tar.gz ($(du -h "$WORK/$NAME-source.tar.gz" | cut -f1))"
for file in scripts/verify_release.sh LICENSE CITATION.cff .zenodo.json requirements.lock; do
    git show "$COMMIT:$file" >"$WORK/$(basename "$file")"
done

image_part "$IMAGE_NAME:$VERSION"
if [[ $LICENSES_FROM == host ]]; then
    "$PYTHON" scripts/license_report.py --python "$PYTHON" --lock "$WORK/requirements.lock" \
        --out "$WORK/THIRD_PARTY_LICENSES.md" >/dev/null
fi
"$PYTHON" scripts/license_report.py --check "$WORK/THIRD_PARTY_LICENSES.md" --lock "$WORK/requirements.lock" >/dev/null \
    || die "the license report lacks packages of the lock (above)"
say "licenses: THIRD_PARTY_LICENSES.md ($LICENSES_NOTE)"

TAG_JSON=null
[[ -z $TAG ]] || TAG_JSON="\"$TAG\""
cat >"$WORK/RELEASE.json" <<EOF
{
  "name": "$NAME",
  "version": "$VERSION",
  "commit": "$COMMIT",
  "tag": $TAG_JSON,
  "uncommitted_changes_left_out": $DIRTY,
  "created": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "image": $IMAGE_JSON,
  "third_party_licenses": "$LICENSES_NOTE"
}
EOF
(cd "$WORK" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort \
    | xargs -d '\n' sha256sum -- >SHA256SUMS)

rm -rf "$OUT"
mv "$WORK" "$OUT"
trap - EXIT
echo
(cd "$OUT" && ls -lA | awk 'NR > 1 {printf "  %12s  %s\n", $5, $9}')
digest=$(sha256sum "$OUT/SHA256SUMS" | cut -d' ' -f1)
say "SHA256SUMS has sha256 $digest: publish it with the release"
say "done in $(( $(date +%s) - started )) s; check it with: bash scripts/verify_release.sh $OUT --expect-sha256 $digest"
}

# The saved image and its id, or why there is none; where there is one, its own license report.
image_part() {
    local ref=$1 reason label id
    LICENSES_FROM=host
    LICENSES_NOTE="made on $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-this host}") by license_report.py, not the image's"
    if [[ ${SKIP_IMAGE:-} == 1 ]]; then
        reason="SKIP_IMAGE=1"
    elif ! command -v docker >/dev/null; then
        reason="no docker command here"
    elif ! timeout 30 docker version >/dev/null 2>&1; then
        reason="no Docker daemon answers (docker version failed)"
    elif ! id=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null); then
        reason="no image $ref on this Docker host (make image builds it)"
    fi
    if [[ -n ${reason:-} ]]; then
        say "image: skipped: $reason"
        IMAGE_JSON="{\"skipped\": \"$reason\"}"
        return
    fi
    label=$(docker image inspect --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$ref")
    if [[ $label != "$COMMIT" && ! ($DIRTY == true && $label == "$COMMIT-dirty") ]]; then
        die "the image $ref was built from ${label:-an unnamed commit}, not from $COMMIT: 'make image' first, or SKIP_IMAGE=1"
    fi
    say "image: saving $ref ($id) with docker save | gzip; several minutes for the 6.7 GB image"
    local compress=(gzip -n -6)
    command -v pigz >/dev/null && compress=(pigz -n -6)
    docker save "$ref" | "${compress[@]}" >"$WORK/$NAME-image.tar.gz"
    echo "$id $ref" >"$WORK/IMAGE_ID"
    IMAGE_JSON="{\"file\": \"$NAME-image.tar.gz\", \"id\": \"$id\", \"ref\": \"$ref\"}"
    say "image: $NAME-image.tar.gz ($(du -h "$WORK/$NAME-image.tar.gz" | cut -f1))"
    local container
    container=$(docker create "$ref")
    docker cp "$container:/opt/mgrb/THIRD_PARTY_LICENSES.md" "$WORK/THIRD_PARTY_LICENSES.md" >/dev/null
    docker rm "$container" >/dev/null
    LICENSES_FROM=image
    LICENSES_NOTE="the image's own, /opt/mgrb/THIRD_PARTY_LICENSES.md"
}

main "$@"
