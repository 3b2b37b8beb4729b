"""What this artifact is: its version, the source commit it was built from, and the container
image it runs in. `mgrb --version`, every results.json and every report say it.

The version has one source, pyproject.toml's `[project] version` (what pip, the Makefile, the
release and CITATION.cff read; tests/unit/test_release.py holds the other copies to it). The
commit comes from git in a checkout; in the image, which has no .git, from MGRB_SOURCE_COMMIT
(the Dockerfile sets it from the build's SOURCE_COMMIT); in an unpacked release archive, from
its SOURCE_COMMIT file. An image cannot know its own id, so whoever starts the container says
it: the Makefile's `docker run` lines and the launcher's Docker mode pass MGRB_IMAGE_ID.

Imports nothing heavy: `mgrb --version` must answer at once.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout, or the image's /opt/mgrb
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}(-dirty)?$")


def version() -> str:
    """pyproject.toml's version where the source tree is at hand, else the installed one's."""
    try:
        with open(ROOT / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        pass
    try:
        return metadata.version("mgrb")
    except metadata.PackageNotFoundError:
        return "unknown"


def source_commit() -> str | None:
    """The commit the code was built from, with '-dirty' when a checkout has uncommitted changes
    to tracked files; None when nothing says."""
    for found in (_git_commit, lambda: os.environ.get("MGRB_SOURCE_COMMIT", "").strip(), _archived_commit):
        commit = found()
        if commit and COMMIT.fullmatch(commit):  # a build without git says "unknown": look further
            return commit
    return None


def _git_commit() -> str | None:
    if not (ROOT / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _archived_commit() -> str | None:
    """The SOURCE_COMMIT file that `make dist` puts at the top of the source archive."""
    try:
        return (ROOT / "SOURCE_COMMIT").read_text().strip()
    except OSError:
        return None


def in_container() -> bool:
    return bool(os.environ.get("MGRB_IN_CONTAINER"))


def image_id() -> str | None:
    """The id (sha256:...) of the image this process runs in, as the one who started the
    container passed it; None outside a container, or where nobody passed it."""
    given = os.environ.get("MGRB_IMAGE_ID", "").strip()
    return given if in_container() and IMAGE_ID.fullmatch(given) else None


def describe() -> dict:
    """The `artifact` block of results.json (mgrb.store.contracts.ARTIFACT)."""
    return {"version": version(), "commit": source_commit(), "image": image_id(),
            "container": in_container()}


def one_line(artifact: dict | None = None) -> str:
    """'mgrb 0.1.0, commit 0123abcd..., image sha256:...': an artifact block in words."""
    artifact = describe() if artifact is None else artifact
    words = [f"mgrb {artifact.get('version') or 'unknown'}",
             f"commit {artifact.get('commit') or 'unknown'}"]
    if artifact.get("container"):
        words.append(f"image {artifact.get('image') or 'unknown (MGRB_IMAGE_ID not passed)'}")
    else:
        words.append("not in a container")
    return ", ".join(words)


class ShowVersion(argparse.Action):
    """`mgrb --version`: worked out only when asked (git runs for the commit)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the version, source commit and image, then exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(one_line() + "\n")
        parser.exit()
