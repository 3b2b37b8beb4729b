#!/usr/bin/env bash
# Checks a downloaded MGRB release (made by `make dist`) and unpacks it:
#   1. every file against SHA256SUMS (compare SHA256SUMS's own sha256, printed first, with the
#      one published beside the release: it vouches for the rest);
#   2. the source archive: unpacked into DIR/mgrb-artifact-VERSION, its version and commit
#      checked against the release's;
#   3. the image, where the release has one and a Docker daemon answers: docker load, then the
#      loaded image's id against IMAGE_ID. Without a daemon this part is skipped, saying so.
#
# Usage: bash verify_release.sh [RELEASE_DIR] [--unpack-to DIR]
#   RELEASE_DIR: the folder of the downloaded files (default: this script's folder)
#   DIR: where the source goes (default: the current folder)
# Exit 0 when everything present checks out, 1 when something does not match, 2 on bad usage.
set -euo pipefail

main() {
local release unpack_to=.
release=$(dirname "$0")
while (( $# )); do
    case $1 in
        --unpack-to) [[ $# -ge 2 ]] || usage "--unpack-to needs a folder"; unpack_to=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) usage "unknown option $1" ;;
        *) release=$1; shift ;;
    esac
done
unpack_to=$(mkdir -p "$unpack_to" && cd "$unpack_to" && pwd) || usage "cannot make the folder $unpack_to"
cd "$release" 2>/dev/null || usage "$release: no such folder"
[[ -f SHA256SUMS ]] || usage "$release: no SHA256SUMS here; not a release folder"

check_sums
check_source "$unpack_to"
check_image
say "the release checks out"
}

say() { echo "verify: $*"; }
usage() { echo "verify: error: $*" >&2; exit 2; }
mismatch() { echo "verify: MISMATCH: $*" >&2; exit 1; }

check_sums() {
    say "SHA256SUMS itself has sha256 $(sha256sum SHA256SUMS | cut -d' ' -f1); it must equal the one published with the release"
    local sum name listed=()
    while read -r sum name; do
        name=${name#\*}
        # plain names of files in this folder only: a path could make sha256sum read elsewhere
        [[ $sum =~ ^[0-9a-f]{64}$ && $name =~ ^[A-Za-z0-9._+-]+$ && $name != . && $name != .. ]] \
            || mismatch "SHA256SUMS: the line for '$name' is not 'sha256  file-name'"
        listed+=("$name")
    done <SHA256SUMS
    (( ${#listed[@]} )) || mismatch "SHA256SUMS lists no file"
    local output status=0
    output=$(LC_ALL=C sha256sum --check --strict SHA256SUMS 2>&1) || status=$?
    if (( status )); then
        echo "$output" | grep -v ': OK$' | sed 's/^/  /' >&2
        mismatch "the files above differ from SHA256SUMS: changed or damaged in transit; download them again"
    fi
    say "checksums: all ${#listed[@]} files match"
    local file
    for file in * .[!.]*; do
        [[ -f $file && $file != SHA256SUMS ]] || continue
        [[ " ${listed[*]} " == *" $file "* ]] || say "note: $file is not in SHA256SUMS; nothing vouches for it (ignored)"
    done
}

check_source() {
    local into=$1 archives=(*-source.tar.gz)
    [[ ${#archives[@]} -eq 1 && -f ${archives[0]} ]] || mismatch "expected one *-source.tar.gz here, found: ${archives[*]}"
    local archive=${archives[0]} name version commit
    name=${archive%-source.tar.gz}
    version=${name#mgrb-artifact-}
    if tar -tzf "$archive" | grep -qv "^$name/"; then
        mismatch "$archive holds paths outside $name/"
    fi
    [[ ! -e $into/$name ]] || usage "$into/$name exists already: remove it, or choose another folder with --unpack-to"
    tar -xzf "$archive" --no-same-owner -C "$into"
    local found
    found=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$into/$name/pyproject.toml")
    [[ $found == "$version" ]] || mismatch "$archive: its pyproject.toml says version '$found', its name $version"
    commit=$(cat "$into/$name/SOURCE_COMMIT" 2>/dev/null || true)
    if [[ -f RELEASE.json ]] && ! grep -q "\"commit\": \"$commit\"" RELEASE.json; then
        mismatch "$archive is commit '${commit:-none}', RELEASE.json names another"
    fi
    say "source: $name (version $version, commit ${commit:-not recorded}) unpacked into $into/$name"
}

check_image() {
    if [[ ! -f IMAGE_ID ]]; then
        local why
        why=$(sed -n 's/.*"skipped": "\([^"]*\)".*/\1/p' RELEASE.json 2>/dev/null || true)
        say "image: none in this release${why:+ (when it was made: $why)}"
        return
    fi
    local want ref images=(*-image.tar.gz)
    read -r want ref <IMAGE_ID
    [[ ${#images[@]} -eq 1 && -f ${images[0]} ]] || mismatch "IMAGE_ID names an image, but there is no single *-image.tar.gz here"
    if ! command -v docker >/dev/null; then
        say "image: not loaded (no docker command here); later: docker load -i ${images[0]}, then its id must be $want"
        return
    fi
    if ! timeout 30 docker version >/dev/null 2>&1; then
        say "image: not loaded (no Docker daemon answers); later: docker load -i ${images[0]}, then its id must be $want"
        return
    fi
    say "image: docker load -i ${images[0]} (minutes for a few GB)"
    docker load -i "${images[0]}" | sed 's/^/  /'
    local got
    got=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null) || mismatch "after docker load there is no image $ref"
    [[ $got == "$want" ]] || mismatch "the loaded image $ref has id $got; IMAGE_ID says $want"
    say "image: $ref loaded, id $got as recorded"
}

main "$@"
