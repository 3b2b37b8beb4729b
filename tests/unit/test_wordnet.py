"""WordNet set-up and look-ups (mgrb/wordnet.py, scripts/setup_wordnet.sh), offline."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mgrb.method import wordnet
from mgrb.data.registry import dataset
from mgrb.errors import WordNetError

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup_wordnet.sh"

DALMATIAN, HOUSE_FINCH, ELECTRIC_GUITAR, ORANGE = "n02110341", "n01532829", "n03272010", "n07747607"
ENTITY, DOG, BIRD, MUSICAL_INSTRUMENT, CITRUS = "n00001740", "n02084071", "n01503061", "n03800933", "n07747055"
CIFAR10_SYNSETS = dataset("cifar10").synsets
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def run_setup(dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SETUP), str(dest)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def nltk_data(tmp_path_factory) -> Path:
    # A set-up failure must fail the tests, not skip them: WordNet is a required resource.
    dest = tmp_path_factory.mktemp("wordnet") / "nltk_data"
    result = run_setup(dest)
    assert result.returncode == 0, result.stdout + result.stderr
    wordnet.ensure_wordnet(dest)
    return dest


def test_setup_writes_lexnames_as_nltk_expects(nltk_data):
    lines = (nltk_data / "corpora" / "wordnet" / "lexnames").read_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[18] == "18\tnoun.person\t1"  # the man page pads this name with spaces
    assert lines[44] == "44\tadj.ppl\t3"
    assert all(re.fullmatch(r"\d\d\t(noun|verb|adj|adv)\.[A-Za-z]+\t[1-4]", line) for line in lines)


def test_setup_copies_rather_than_links(nltk_data):
    folder = nltk_data / "corpora" / "wordnet"
    for name in ("data.noun", "index.noun", "index.sense", "noun.exc"):
        assert (folder / name).is_file() and not (folder / name).is_symlink()
    assert (folder / "data.noun").stat().st_size > 10_000_000


def test_setup_is_idempotent(nltk_data):
    data_noun = nltk_data / "corpora" / "wordnet" / "data.noun"
    before = data_noun.stat().st_mtime_ns
    result = run_setup(nltk_data)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    assert data_noun.stat().st_mtime_ns == before


def test_synset_for_wnid_is_looked_up_by_offset(nltk_data):
    assert wordnet.synset_for_wnid(DALMATIAN).name() == "dalmatian.n.02"
    assert wordnet.synset_for_wnid(ENTITY).name() == "entity.n.01"


@pytest.mark.parametrize("wnid", ["dog", "n0211034", "n021103411", "v02110341", "n0211034x", ""])
def test_malformed_wnid_is_a_wordnet_error(nltk_data, wnid):
    with pytest.raises(WordNetError, match="not a WordNet noun id"):
        wordnet.synset_for_wnid(wnid)


def test_unknown_offset_is_a_wordnet_error_naming_the_wnid(nltk_data):
    with pytest.raises(WordNetError, match="n02110340"):
        wordnet.synset_for_wnid("n02110340")


@pytest.mark.parametrize("wnid, inside", [
    (DALMATIAN, [DOG, "n02083346"]),            # dog, canine (first by name, not domestic_animal)
    (HOUSE_FINCH, [BIRD, "n01471682"]),         # bird, vertebrate
    (ELECTRIC_GUITAR, [MUSICAL_INSTRUMENT, "n03467517"]),  # musical instrument, guitar
    (ORANGE, [CITRUS, "n13134947"]),            # citrus, fruit (the plant organ, before produce)
])
def test_hypernym_path_runs_from_entity_to_the_class(nltk_data, wnid, inside):
    path = wordnet.hypernym_path(wnid)
    assert path[0] == ENTITY and path[-1] == wnid
    assert all(re.fullmatch(r"n\d{8}", node) for node in path)
    assert len(set(path)) == len(path)
    for node in inside:
        assert node in path
    # Each step goes to a hypernym of the step below it.
    for parent, child in zip(path, path[1:]):
        synset = wordnet.synset_for_wnid(child)
        assert wordnet.synset_for_wnid(parent) in synset.hypernyms() + synset.instance_hypernyms()


def test_dalmatian_path_in_full(nltk_data):
    wn = wordnet.ensure_wordnet()
    names = [wn.synset_from_pos_and_offset("n", int(node[1:])).name()
             for node in wordnet.hypernym_path(DALMATIAN)]
    assert names == ["entity.n.01", "physical_entity.n.01", "object.n.01", "whole.n.02",
                     "living_thing.n.01", "organism.n.01", "animal.n.01", "chordate.n.01",
                     "vertebrate.n.01", "mammal.n.01", "placental.n.01", "carnivore.n.01",
                     "canine.n.02", "dog.n.01", "dalmatian.n.02"]


def test_hypernym_path_does_not_depend_on_nltk_hypernym_order(nltk_data, monkeypatch):
    # Newer NLTK returns hypernyms in set order, which changes with PYTHONHASHSEED; the
    # path must follow the first by name whatever order NLTK gives.
    from nltk.corpus.reader.wordnet import Synset

    expected = [wordnet.hypernym_path(wnid) for wnid in (DALMATIAN, ORANGE)]
    original = Synset.hypernyms
    monkeypatch.setattr(Synset, "hypernyms", lambda self: original(self)[::-1])
    assert [wordnet.hypernym_path(wnid) for wnid in (DALMATIAN, ORANGE)] == expected


def _load_in_fresh_process(tmp_path: Path, given: Path) -> subprocess.CompletedProcess:
    # A fresh process because NLTK keeps a loaded corpus for the life of the process; every
    # other place WordNet could be found (NLTK's defaults, the project's .nltk_data) is cut off.
    code = ("import sys, nltk; from pathlib import Path; from mgrb.method import wordnet; "
            "from mgrb.errors import WordNetError\n"
            "nltk.data.path[:] = []; wordnet.PROJECT_DATA_DIR = Path(sys.argv[2])\n"
            "try:\n    wordnet.ensure_wordnet(sys.argv[1])\n"
            "except WordNetError as error:\n    print(error); sys.exit(3)\n")
    env = {key: value for key, value in os.environ.items()
           if key not in ("MGRB_NLTK_DATA", "NLTK_DATA")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code, str(given), str(tmp_path / "no_project")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


def test_missing_data_dir_is_a_helpful_wordnet_error(tmp_path):
    result = _load_in_fresh_process(tmp_path, tmp_path / "missing")
    assert result.returncode == 3, result.stdout + result.stderr
    message = result.stdout
    assert "make setup" in message and "setup_wordnet.sh" in message
    assert "nltk.download('wordnet')" in message and "MGRB_NLTK_DATA" in message
    assert str(tmp_path / "missing") in message


def test_incomplete_data_dir_is_a_wordnet_error(tmp_path):
    (tmp_path / "broken" / "corpora" / "wordnet").mkdir(parents=True)
    result = _load_in_fresh_process(tmp_path, tmp_path / "broken")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "make setup" in result.stdout


def test_cifar10_synsets_are_the_intended_senses(nltk_data):
    wn = wordnet.ensure_wordnet()
    definitions = dict(zip(CIFAR10, (wn.synset(name).definition() for name in CIFAR10_SYNSETS)))
    assert "aircraft" in definitions["airplane"]
    assert "motor vehicle" in definitions["automobile"]
    assert "feathers" in definitions["bird"]
    assert "vessel" in definitions["ship"]
    assert "hauling" in definitions["truck"]


def test_digit_synsets_are_the_numbers(nltk_data):
    wn = wordnet.ensure_wordnet()
    digit = wn.synset("digit.n.01")
    for name in wordnet.DIGIT_SYNSETS:
        assert digit in wn.synset(name).hypernyms(), name


def test_semantic_groups_split_cifar10_into_vehicles_and_animals(nltk_data):
    groups = wordnet.semantic_groups(list(CIFAR10_SYNSETS), 2)
    vehicles = {name for name, group in zip(CIFAR10, groups) if group == groups[0]}
    assert vehicles == {"airplane", "automobile", "ship", "truck"}
    assert groups[0] == 0 and set(groups) == {0, 1}


def test_semantic_groups_accept_wnids_and_names_alike(nltk_data):
    entries = ["dog.n.01", DALMATIAN, "n03272010", "guitar.n.01"]
    assert wordnet.semantic_groups(entries, 2) == [0, 0, 1, 1]


@pytest.mark.parametrize("k", [10, 11, 100])
def test_semantic_groups_with_k_at_least_n_are_singletons(nltk_data, k):
    assert wordnet.semantic_groups(list(CIFAR10_SYNSETS), k) == list(range(10))


def test_semantic_groups_of_one_class(nltk_data):
    assert wordnet.semantic_groups(["dog.n.01"], 3) == [0]


def test_semantic_groups_are_deterministic_and_numbered_by_first_appearance(nltk_data):
    for k in range(1, 10):
        first = wordnet.semantic_groups(list(CIFAR10_SYNSETS), k)
        assert first == wordnet.semantic_groups(list(CIFAR10_SYNSETS), k)
        assert len(set(first)) == k
        seen = []
        for group in first:
            if group not in seen:
                seen.append(group)
        assert seen == list(range(k))


def test_semantic_groups_reject_unknown_names(nltk_data):
    with pytest.raises(WordNetError, match="no_such_thing"):
        wordnet.semantic_groups(["dog.n.01", "no_such_thing.n.01"], 1)
