"""README.md and docs/*.md point only at files that exist: every relative link and image, and
every path of the repository they name in text (`docs/method.md`, `scripts/setup.sh`)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# A path into one of the repository's folders, or one of its top-level files, as text names it.
FOLDERS = ("docs", "scripts", "tests", "mgrb", "artifact", "benchmarks", "experiments", "requirements")
TOP_LEVEL = ("README.md", "Makefile", "Dockerfile", "pyproject.toml", "requirements.lock", "LICENSE",
             "CITATION.cff", "CHANGELOG.md", ".zenodo.json")
_IN_FOLDERS, _FILES = "|".join(FOLDERS), "|".join(map(re.escape, TOP_LEVEL))
PATH = re.compile(rf"(?<![\w./<$-])((?:{_IN_FOLDERS})/[\w./-]*|(?:{_FILES})(?![\w-]|\.\w))")
# Files that commands write when they run, named as where their output goes (not committed).
WRITTEN_BY_COMMANDS = {"tests/data/nvml_recorded.json"}


def _links(text: str):
    for match in LINK.finditer(text):
        target = match[1]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, a mail address, or a heading of the same page
        yield target.split("#", 1)[0]


def _named_paths(text: str):
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets are checked by _links
    for match in PATH.finditer(text):
        following = text[match.end(1):match.end(1) + 1]
        if following and following in "*<{":  # a glob or a placeholder: experiments/c100_*
            continue
        yield match[1].rstrip(".-")  # a sentence's full stop is not part of the path


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document):
    missing = [target for target in _links(document.read_text())
               if not (document.parent / target).exists()]
    assert not missing, f"{document.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(document):
    missing = sorted({path for path in _named_paths(document.read_text())
                      if path not in WRITTEN_BY_COMMANDS and not (ROOT / path).exists()})
    assert not missing, f"{document.name} names paths that do not exist: {missing}"


def test_the_checks_see_links_and_paths():
    """The patterns find what they must: a check that finds nothing passes for nothing."""
    text = ("see [the method](docs/method.md#7) and ![fig](docs/x.png \"title\"), "
            "`scripts/setup.sh`, requirements.lock, https://example.org/docs/a, experiments/c100_*, "
            "runs/<name>/results.json, mgrb/cli.py.")
    assert list(_links(text)) == ["docs/method.md", "docs/x.png"]
    assert list(_named_paths(text)) == ["scripts/setup.sh", "requirements.lock", "mgrb/cli.py"]
