#!/usr/bin/env bash
# Make NLTK's WordNet 3.0 available offline under DEST (e.g. .nltk_data), without nltk.download.
#
# Debian's wordnet-base package ships the same WordNet 3.0 database that NLTK's "wordnet"
# corpus holds, minus one file NLTK needs: "lexnames". That table is printed in the
# lexnames(5WN) man page, so we rebuild it from there.
#
# Usage: scripts/setup_wordnet.sh DEST
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DEST   (e.g. $0 .nltk_data)" >&2
    exit 2
fi

DEST=$1
TARGET=$DEST/corpora/wordnet
SRC=${WORDNET_DIR:-/usr/share/wordnet}   # overridable to exercise the fallbacks
MANPAGE=${WORDNET_LEXNAMES_MAN:-/usr/share/man/man5/lexnames.5WN.gz}
PACKAGES="wordnet-base wordnet-sense-index"
# The project's virtual environment has nltk; a bare python3 may not.
VENV_PYTHON=$(dirname "$0")/../.venv/bin/python
[[ -x $VENV_PYTHON ]] || VENV_PYTHON=python3
PYTHON=${PYTHON:-$VENV_PYTHON}

say() { echo "setup_wordnet: $*"; }

# lexnames is written last, so its presence means an earlier run finished.
if [[ -s $TARGET/data.noun && -s $TARGET/lexnames ]]; then
    say "WordNet already set up in $TARGET; nothing to do"
    exit 0
fi

# Last resort for machines without the Debian packages: NLTK's own downloader (needs internet).
nltk_download() {
    say "trying NLTK's downloader into $DEST (needs internet)"
    if "$PYTHON" -c "import nltk, sys; sys.exit(0 if nltk.download('wordnet', download_dir=sys.argv[1], quiet=True) else 1)" "$DEST" \
        && [[ -s $TARGET/data.noun || -s $DEST/corpora/wordnet.zip ]]; then
        say "WordNet downloaded by NLTK into $DEST/corpora"
        exit 0
    fi
    cat >&2 <<EOF
setup_wordnet: could not set up WordNet in $DEST.
  On Debian/Ubuntu:  sudo apt-get install $PACKAGES   then run this script again.
  With internet:     $PYTHON -c "import nltk; nltk.download('wordnet', download_dir='$DEST')"
  Or point MGRB_NLTK_DATA at an existing nltk_data folder that holds corpora/wordnet.
EOF
    exit 1
}

apt_install() {
    local run=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null; then
            say "not root and no sudo: cannot install $PACKAGES" >&2
            return 1
        fi
        run=(sudo)
    fi
    if ! command -v apt-get >/dev/null; then
        say "no apt-get on this machine: cannot install $PACKAGES" >&2
        return 1
    fi
    say "installing $PACKAGES with apt-get"
    # Only refresh the package lists when needed: apt-get update is slow and needs network.
    if ! ${run[@]+"${run[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES; then
        say "install failed; running apt-get update and trying again"
        ${run[@]+"${run[@]}"} apt-get update
        ${run[@]+"${run[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES
    fi
}

if [[ ! -s $SRC/data.noun ]]; then
    say "$SRC/data.noun not found"
    apt_install || true
    if [[ ! -s $SRC/data.noun ]]; then
        say "still no $SRC/data.noun" >&2
        nltk_download
    fi
fi
if [[ ! -s $MANPAGE ]]; then
    # Docker-style images often drop man pages (dpkg path-exclude), and with them lexnames.
    say "$MANPAGE not found (man pages excluded?), so lexnames cannot be rebuilt"
    nltk_download
fi

say "copying the WordNet database files of $SRC into $TARGET"
mkdir -p "$TARGET"
# Copies, not symlinks, so that the folder keeps working if the packages are removed.
# Only the top-level regular files: the subfolders hold the Tk browser (bin, pixmaps, wnres).
find "$SRC" -maxdepth 1 -type f -exec cp -f {} "$TARGET"/ \;

# The man page is roff; the table rows are "NN<TAB>name<TAB>description" between .TS and .TE.
# NLTK wants "NN<TAB>name<TAB>category", category 1 noun, 2 verb, 3 adjective, 4 adverb.
say "writing $TARGET/lexnames from $MANPAGE"
zcat "$MANPAGE" | awk -F'\t' '
    /^\.TS/ { intable = 1; next }
    /^\.TE/ { intable = 0; next }
    intable && $1 ~ /^[0-9][0-9]$/ {
        name = $2; gsub(/[ \t]+$/, "", name)      # the page pads "noun.person  "
        split(name, part, ".")
        cat = (part[1] == "noun") ? 1 : (part[1] == "verb") ? 2 : (part[1] == "adj") ? 3 : (part[1] == "adv") ? 4 : 0
        printf "%s\t%s\t%d\n", $1, name, cat
    }' > "$TARGET/lexnames.tmp"

# Check the table before publishing it: 45 rows numbered 00..44, each with a known category.
rows=$(wc -l < "$TARGET/lexnames.tmp")
good=$(awk -F'\t' 'NF == 3 && $1 == sprintf("%02d", NR - 1) && $2 ~ /^(noun|verb|adj|adv)\.[A-Za-z]+$/ && $3 ~ /^[1-4]$/' \
       "$TARGET/lexnames.tmp" | wc -l)
if [[ $rows -ne 45 || $good -ne 45 ]]; then
    say "lexnames built from $MANPAGE looks wrong ($rows rows, $good well formed; expected 45)" >&2
    rm -f "$TARGET/lexnames.tmp"
    nltk_download
fi
mv "$TARGET/lexnames.tmp" "$TARGET/lexnames"

say "done: $(find "$TARGET" -type f | wc -l) files, $(du -sh "$TARGET" | cut -f1) in $TARGET"
