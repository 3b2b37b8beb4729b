"""README.md and docs/*.md point only at files that exist: every relative link and image, the
heading a link's anchor names, and every path of the repository they name in text
(`docs/method.md`, `scripts/setup.sh`). README links to every page of docs/, and every command
they show exists: make targets, `mgrb` command lines, `python -m` modules."""

import argparse
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


# Anchors: a link to `file.md#heading` (or `#heading` on the same page) names a heading there,
# spelt as GitHub spells a heading's anchor.
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def _outside_fences(text: str):
    fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
            continue
        if not fence:
            yield line


def _slug(heading: str) -> str:
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(document: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _outside_fences(document.read_text()):
        match = HEADING.match(line)
        if match:
            slug = _slug(match[1])
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _anchored_links(text: str):
    for match in LINK.finditer(text):
        target = match[1]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or "#" not in target:
            continue
        page, anchor = target.split("#", 1)
        if page == "" or page.endswith(".md"):
            yield page, anchor


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_link_anchors_name_headings(document):
    def target(page: str) -> Path:
        return document.parent / page if page else document

    # a page that does not exist is test_relative_links_resolve's to report
    missing = [f"{page}#{anchor}" for page, anchor in _anchored_links(document.read_text())
               if target(page).is_file() and anchor not in _anchors(target(page))]
    assert not missing, f"{document.name} links to headings that do not exist: {missing}"


def test_readme_lists_every_docs_file():
    """Every page of docs/ is one click from README (its Documentation table)."""
    linked = {(ROOT / target).resolve() for target in _links((ROOT / "README.md").read_text())}
    unlisted = [path.name for path in sorted((ROOT / "docs").glob("*.md")) if path.resolve() not in linked]
    assert not unlisted, f"README does not link to {unlisted}"


# Commands: every `make TARGET` shown is a target of the Makefile, every `mgrb ...` line of a
# shell block parses with the real command line (and an inline `mgrb SUBCOMMAND` names one), and
# every `python -m MODULE` is a module of the repository.
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
MAKE = re.compile(r"(?:^|[\s;&(])make\s+((?:[A-Z_]+=\S*\s+)*)([a-z][\w-]*)", re.M)
MODULE = re.compile(r"-m\s+((?:benchmarks|mgrb|scripts)(?:\.\w+)+)")
INLINE_MGRB = re.compile(r"(?:^|[\s/])mgrb\s+([a-z][\w-]*)")


def _shell_blocks(text: str) -> list[str]:
    return [match[2] for match in FENCE.finditer(text) if match[1] in SHELL_LANGUAGES]


def _inline_code(text: str) -> list[str]:
    without_blocks = FENCE.sub("", text)
    return re.findall(r"`([^`]+)`", without_blocks)


def _make_targets_shown(text: str) -> list[str]:
    """Shell blocks without their comments, then inline code, as written."""
    code = [re.sub(r"#.*", "", block) for block in _shell_blocks(text)] + _inline_code(text)
    return [match[2] for piece in code for match in MAKE.finditer(piece)]


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def _shell_lines(block: str):
    import shlex

    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield words


def _mgrb_arguments(words: list[str]):
    """The arguments given to mgrb on one shell line, or None when it does not run mgrb."""
    for index, word in enumerate(words):
        if word == "mgrb" or word.endswith("/mgrb"):
            rest = words[index + 1:]
            ends = [i for i, w in enumerate(rest) if w in (";", "&&", "||", "|")]
            return rest[:ends[0]] if ends else rest
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_make_targets_shown_exist(document):
    missing = sorted(set(_make_targets_shown(document.read_text())) - _makefile_targets())
    assert not missing, f"{document.name} shows make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_mgrb_commands_shown_parse(document):
    from mgrb.cli import build_parser

    text = document.read_text()
    parser = build_parser()
    subcommands = set(next(action.choices for action in parser._actions
                           if isinstance(action, argparse._SubParsersAction)))
    wrong = [name for code in _inline_code(text) for name in INLINE_MGRB.findall(code)
             if name not in subcommands]
    for block in _shell_blocks(text):
        for words in _shell_lines(block):
            arguments = _mgrb_arguments(words)
            if arguments is None:
                continue
            try:
                parser.parse_args(arguments)
            except SystemExit:
                wrong.append(" ".join(words))
    assert not wrong, f"{document.name} shows mgrb commands that do not parse: {wrong}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_modules_shown_exist(document):
    text = document.read_text()
    shown = {module for code in _shell_blocks(text) + _inline_code(text) for module in MODULE.findall(code)}
    missing = sorted(module for module in shown
                     if not (ROOT / (module.replace(".", "/") + ".py")).is_file()
                     and not (ROOT / module.replace(".", "/") / "__main__.py").is_file())
    assert not missing, f"{document.name} shows `python -m` modules that do not exist: {missing}"


def test_the_command_and_anchor_checks_see_what_they_must():
    text = ("## What `make image-test` verifies, and what only a GPU host can\n\n"
            "```sh\nmake reproduce EXPERIMENTS='c100_*'   # a comment: make nothing\n"
            ".venv/bin/mgrb run digits_5_1 --set train.epochs=3 --out runs/try\n"
            "torchrun --nproc-per-node 4 -m mgrb run i100_ont_50_10\n```\n"
            "`IMAGE_TEST_BASE=pinned make\nimage-test`, `python -m benchmarks.bench_step --help`, "
            "`mgrb data prepare`, [x](#what-make-image-test-verifies-and-what-only-a-gpu-host-can)\n")
    blocks, inline = _shell_blocks(text), _inline_code(text)
    assert _make_targets_shown(text) == ["reproduce", "image-test", "image-test"]
    assert [_mgrb_arguments(words) for words in _shell_lines(blocks[0])] == \
        [None, ["run", "digits_5_1", "--set", "train.epochs=3", "--out", "runs/try"],
         ["run", "i100_ont_50_10"]]
    assert [name for code in inline for name in INLINE_MGRB.findall(code)] == ["data"]
    assert [m for code in inline for m in MODULE.findall(code)] == ["benchmarks.bench_step"]
    assert list(_anchored_links(text)) == [("", "what-make-image-test-verifies-and-what-only-a-gpu-host-can")]
    assert _slug("Our replay against a peer library's") == "our-replay-against-a-peer-librarys"
