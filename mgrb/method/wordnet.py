"""WordNet through NLTK: synsets of ImageNet ids, hypernym paths, semantic groups.

Used by the 'ont' hierarchy (root-to-leaf hypernym paths of miniImageNet/ImageNet-100
classes) and the 'sem' hierarchy (Wu-Palmer clusters, docs/method.md section 5). The database
is set up offline by scripts/setup_wordnet.sh; nothing here downloads.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path

from mgrb.errors import WordNetError

SOURCE = "WordNet 3.0 via NLTK, Wu-Palmer similarity, average-linkage clustering"

# Where `make setup` puts WordNet; a module constant so that tests can point it elsewhere.
PROJECT_DATA_DIR = Path(__file__).resolve().parents[2] / ".nltk_data"  # the checkout's

ROOT_WNID = "n00001740"  # entity.n.01, the single root of WordNet's noun hierarchy

# Digits 0..9. zero.n.01 does not exist as the number (wn.synsets('zero') starts with
# nothing.n.01, "a quantity of no importance"); zero.n.02 is "a mathematical element that
# when added to another number yields the same number". The others' .n.01 sense is
# "the cardinal number that is the sum of ..." (one.n.01: "the smallest whole number").
# All ten are direct children of digit.n.01, so every pair has the same Wu-Palmer
# similarity (0.875): semantic groups of digits come from tie-breaking, not meaning.
DIGIT_SYNSETS = ("zero.n.02", "one.n.01", "two.n.01", "three.n.01", "four.n.01",
                 "five.n.01", "six.n.01", "seven.n.01", "eight.n.01", "nine.n.01")

_WNID = re.compile(r"n(\d{8})")


def _search_dirs(data_dir: str | Path | None) -> list[str]:
    preferred = [data_dir, os.environ.get("MGRB_NLTK_DATA"), PROJECT_DATA_DIR]
    return [str(Path(d).expanduser()) for d in preferred if d]


@functools.cache
def ensure_wordnet(data_dir: str | Path | None = None):
    """NLTK's WordNet corpus reader, loaded and proven to work; WordNetError if it cannot be.

    NLTK loads the corpus once per process: a data_dir given after the first successful
    load only changes the search path, not the corpus already loaded.
    """
    import nltk

    preferred = _search_dirs(data_dir)
    nltk.data.path[:] = preferred + [p for p in nltk.data.path if p not in preferred]
    try:
        from nltk.corpus import wordnet as wn

        if wn.synset_from_pos_and_offset("n", int(ROOT_WNID[1:])) is None:
            raise LookupError(f"the database has no root synset {ROOT_WNID} (entity.n.01)")
    # LookupError: corpus not found; the others: a folder that holds an incomplete copy.
    except (LookupError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()
        reason = next((line.strip() for line in reason if line.strip() and "*" not in line),
                      type(error).__name__)
        raise WordNetError(
            f"NLTK's WordNet corpus could not be loaded ({reason}). Searched for "
            f"corpora/wordnet in: {', '.join(nltk.data.path)}. To fix it, run `make setup` "
            "(it runs scripts/setup_wordnet.sh .nltk_data, which copies the Debian "
            "wordnet-base database into the project's .nltk_data folder), or, on a machine "
            "with internet access, run python -c \"import nltk; nltk.download('wordnet')\", "
            "or set MGRB_NLTK_DATA to an nltk_data folder that contains corpora/wordnet."
        ) from error
    return wn


def _wnid(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"


def synset_for_wnid(wnid: str):
    """The noun synset an ImageNet id names: 'n02110341' is noun offset 2110341."""
    match = _WNID.fullmatch(wnid) if isinstance(wnid, str) else None
    if match is None:
        raise WordNetError(f"{wnid!r} is not a WordNet noun id: expected 'n' followed by "
                           "8 digits, as in ImageNet's 'n02110341'")
    wn = ensure_wordnet()
    with warnings.catch_warnings():
        # NLTK warns and returns None for an unknown offset; we raise our own error instead.
        warnings.simplefilter("ignore", UserWarning)
        synset = wn.synset_from_pos_and_offset("n", int(match.group(1)))
    if synset is None:
        raise WordNetError(f"WordNet id {wnid} names no noun synset in WordNet "
                           f"{wn.get_version()}: check the class list's wnids")
    return synset


def _first(synsets: list):
    # NLTK sorted related synsets by name until 2024 (the authors' "first hypernym" was the
    # alphabetically first); newer NLTK returns them in set order, which changes with
    # PYTHONHASHSEED. Sorting restores both the original choice and determinism.
    return min(synsets) if synsets else None


def hypernym_path(wnid: str) -> list[str]:
    """wnids from the root (entity, n00001740) down to wnid, following the first hypernym."""
    synset = synset_for_wnid(wnid)
    path = [_wnid(synset)]
    while True:
        # Instance hypernyms: named entities (e.g. a city) have no plain hypernym.
        synset = _first(synset.hypernyms()) or _first(synset.instance_hypernyms())
        if synset is None:
            return path[::-1]
        path.append(_wnid(synset))


def _synset(entry: str):
    if _WNID.fullmatch(entry):
        return synset_for_wnid(entry)
    wn = ensure_wordnet()
    try:
        return wn.synset(entry)
    # NLTK raises its own WordNetError for an unknown sense, ValueError for a malformed name.
    except Exception as error:
        raise WordNetError(f"{entry!r} is neither a WordNet noun id ('n02110341') nor a "
                           f"known synset name ('dog.n.01'): {error}") from error


def semantic_groups(synset_names_or_wnids: list[str], k: int) -> list[int]:
    """One group id per class: average-linkage clusters of Wu-Palmer distance, k groups.

    Group ids are numbered in order of first appearance, so the result depends only on
    the classes and k.
    """
    if k < 1:
        raise ValueError(f"semantic_groups needs k >= 1, got {k}")
    synsets = [_synset(entry) for entry in synset_names_or_wnids]
    n = len(synsets)
    if k >= n:
        return list(range(n))

    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    distance = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            # None means no common ancestor (only across parts of speech): as far as can be.
            similarity = synsets[i].wup_similarity(synsets[j]) or 0.0
            distance[i, j] = distance[j, i] = 1.0 - similarity
    labels = AgglomerativeClustering(n_clusters=k, metric="precomputed",
                                     linkage="average").fit_predict(distance)
    renumber: dict[int, int] = {}
    return [renumber.setdefault(int(label), len(renumber)) for label in labels]
