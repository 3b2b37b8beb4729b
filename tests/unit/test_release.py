"""The artifact as it is archived and cited: one version everywhere, a valid CITATION.cff, the
version, commit and image in results and reports, the third-party license report, and
`make dist` checked by its own verify script (Docker stood in for by a fake `docker` command)."""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from mgrb import __version__
from mgrb import version as artifact
from mgrb.cli import main
from mgrb.reporting.report import write_report
from mgrb.store import contracts
from mgrb.store.contracts import RunFileError

ROOT = Path(__file__).parents[2]
VERSION = artifact.version()
PAPER_DOI = "10.1109/TKDE.2022.3188335"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE_ID = "sha256:" + "ab" * 32
LICENSE_REPORT = [sys.executable, str(ROOT / "scripts" / "license_report.py")]


# -- version, license, citation ------------------------------------------------------------
def _make_variable(name: str) -> str:
    done = subprocess.run(["make", "-s", "--no-print-directory", "--eval", f"show: ; @echo $({name})",
                           "show"], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_version_is_pyprojects_everywhere():
    with open(ROOT / "pyproject.toml", "rb") as handle:
        import tomllib
        assert VERSION == tomllib.load(handle)["project"]["version"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert __version__ == VERSION, "mgrb/__init__.py's __version__"
    assert citation["version"] == zenodo["version"] == VERSION
    assert _make_variable("VERSION") == VERSION
    assert re.search(r"^ARG VERSION=(\S+)$", dockerfile, re.M)[1] == VERSION
    assert re.search(rf"^## {re.escape(VERSION)}\b", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_one_license_is_declared_everywhere():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert 'license = {text = "MIT"}' in (ROOT / "pyproject.toml").read_text()
    assert 'org.opencontainers.image.licenses="MIT"' in (ROOT / "Dockerfile").read_text()
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text())["license"] == "MIT"
    assert json.loads((ROOT / ".zenodo.json").read_text())["license"] == "MIT"


def test_citation_cff_is_valid_and_names_the_paper():
    cffconvert = Path(sys.executable).parent / "cffconvert"
    done = subprocess.run([str(cffconvert), "--validate", "-i", str(ROOT / "CITATION.cff")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    (paper,) = [ref for ref in citation["references"] if ref["type"] == "article"]
    assert paper["doi"] == PAPER_DOI and paper["year"] == 2022
    assert [a["family-names"] for a in paper["authors"]] == ["Chen", "Wang", "Hu"]


def test_zenodo_metadata_matches_the_citation_and_relates_to_the_paper():
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert zenodo["upload_type"] == "software" and zenodo["access_right"] == "open"
    assert " ".join(zenodo["title"].split()) == " ".join(citation["title"].split())
    assert [c["name"] for c in zenodo["creators"]] == [a["name"] for a in citation["authors"]]
    related = {(r["scheme"], r["identifier"]): r["relation"] for r in zenodo["related_identifiers"]}
    assert related[("doi", PAPER_DOI)] == "references"
    assert all(relation in ("references", "isSupplementTo", "isDerivedFrom", "cites")
               for relation in related.values())


# -- what a run records ----------------------------------------------------------------------
def test_mgrb_version_names_version_and_commit():
    done = subprocess.run([sys.executable, "-m", "mgrb", "--version"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith(f"mgrb {VERSION}, commit "), done
    assert done.stdout.rstrip().endswith("not in a container")


def test_the_commit_comes_from_git_the_image_or_the_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "ROOT", tmp_path)  # no .git, no pyproject.toml here
    monkeypatch.delenv("MGRB_SOURCE_COMMIT", raising=False)
    assert artifact.source_commit() is None
    assert artifact.version() == VERSION  # the installed distribution's
    (tmp_path / "SOURCE_COMMIT").write_text(COMMIT)  # an unpacked release archive
    assert artifact.source_commit() == COMMIT
    monkeypatch.setenv("MGRB_SOURCE_COMMIT", COMMIT[::-1])  # the image's record
    assert artifact.source_commit() == COMMIT[::-1]
    monkeypatch.setenv("MGRB_SOURCE_COMMIT", "unknown")  # a build without git: nothing said
    assert artifact.source_commit() == COMMIT  # the archive's file still speaks


def test_the_image_id_counts_only_inside_a_container_and_only_as_an_id(monkeypatch):
    monkeypatch.setenv("MGRB_IMAGE_ID", IMAGE_ID)
    monkeypatch.delenv("MGRB_IN_CONTAINER", raising=False)
    assert artifact.describe()["image"] is None and artifact.describe()["container"] is False
    monkeypatch.setenv("MGRB_IN_CONTAINER", "1")
    assert artifact.describe()["image"] == IMAGE_ID
    monkeypatch.setenv("MGRB_IMAGE_ID", "mgrb-artifact:latest")
    assert artifact.describe()["image"] is None
    assert artifact.one_line(artifact.describe()).endswith("image unknown (MGRB_IMAGE_ID not passed)")


TINY = """\
name: tiny
dataset: {name: digits}
protocol: {initial: 6, increment: 2, memory_total: 200, holdout_fraction: 0.1}
train: {epochs: 1, milestones: [1], stage2_epochs: 1, batch_size: 64}
method: {losses: ce+distill+hierloss, beta: 20, scale: 0.5}
hierarchy: {kind: vis, clusters: 2}
"""


def test_a_run_in_the_image_records_version_commit_and_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MGRB_IN_CONTAINER", "1")
    monkeypatch.setenv("MGRB_IMAGE_ID", IMAGE_ID)
    (tmp_path / "e.yaml").write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "e.yaml"), "--out", str(out), "--quiet", "--device", "cpu"]) == 0, \
        capsys.readouterr().err
    results = contracts.read("results", out / "results.json")
    assert results["artifact"] == {"version": VERSION, "commit": artifact.source_commit(),
                                   "image": IMAGE_ID, "container": True}
    assert results["git_commit"] == results["artifact"]["commit"]
    report = write_report({"tiny": [results]}, tmp_path / "reports").read_text()
    assert f"by mgrb {VERSION}, commit " in report.splitlines()[2]
    artifact_lines = report.split("## Artifact\n", 1)[1].split("\n## ", 1)[0]
    assert f"image {IMAGE_ID} (1 run)" in artifact_lines
    assert IMAGE_ID in (tmp_path / "reports" / "results.csv").read_text()


def _results(**fields) -> dict:
    return {"format": 1, "experiment": "a", "avg_top1": 60.0, "last_top1": 50.0,
            "phases": [{"phase": 0, "seen_classes": 5, "top1": 60.0}], **fields}


def test_results_without_the_artifact_block_still_read_and_a_bad_one_is_named(tmp_path):
    contracts.check("results", _results(), "results.json")  # written before 0.1.0
    report = write_report({"a": [_results(git_commit=COMMIT)]}, tmp_path).read_text()
    assert f"not recorded (results written before version 0.1.0), commit {COMMIT} (1 run)" in report
    bad = {"version": VERSION, "commit": COMMIT, "image": "mgrb-artifact:latest", "container": True}
    with pytest.raises(RunFileError, match=r"results.json: artifact: image: 'mgrb-artifact:latest' is "
                                           r"not a Docker image id"):
        contracts.check("results", _results(artifact=bad), "results.json")
    with pytest.raises(RunFileError, match="artifact: container: must be true or false"):
        contracts.check("results", _results(artifact={"version": "1", "container": "yes"}), "results.json")


# -- the license report --------------------------------------------------------------------
def _environment_lock() -> str:
    """The lock this environment was made from (either CUDA variant; setup.sh's stamp)."""
    stamp = Path(sys.prefix) / ".installed"
    return (stamp.read_text().strip() if stamp.is_file() else "") or "requirements.lock"


def _lock_names() -> dict[str, str]:
    """The packages of the lock this environment was made from."""
    lock = (ROOT / _environment_lock()).read_text()
    return {re.sub(r"[-_.]+", "-", m[1]).lower(): m[2]
            for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)}


@pytest.fixture(scope="module")
def license_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("licenses") / "THIRD_PARTY_LICENSES.md"
    subprocess.run([*LICENSE_REPORT, "--out", str(out)], check=True, capture_output=True)
    return out


def test_the_license_report_lists_every_package_of_the_lock(license_report):
    text = license_report.read_text()
    python = text.split("## Python packages", 1)[1].split("\n## ", 1)[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| (\S+) \| (\S+) \| ([^|]+) \|", python, re.M)}
    for name, version in _lock_names().items():
        assert rows.get(name) == version, name
    assert "| torch | " in python and "## Debian packages" in text and "## WordNet" in text
    # the NVIDIA wheels' terms are named, not waved through
    attention = text.split("## Needs a reader's attention", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"nvidia-cudnn-cu1[23] \S+: .*(Proprietary|NVIDIA)", attention)
    done = subprocess.run([*LICENSE_REPORT, "--check", str(license_report)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_license_check_names_a_missing_package(license_report, tmp_path):
    cut = tmp_path / "cut.md"
    cut.write_text(re.sub(r"^\| torch \|.*\n", "", license_report.read_text(), flags=re.M))
    done = subprocess.run([*LICENSE_REPORT, "--check", str(cut)], capture_output=True, text=True)
    assert done.returncode == 1 and "1 package(s)" in done.stderr and "torch==" in done.stderr


def test_the_license_report_names_a_missing_lock_without_a_traceback(tmp_path):
    done = subprocess.run([*LICENSE_REPORT, "--lock", str(tmp_path / "none.lock")], capture_output=True,
                          text=True)
    assert done.returncode == 2 and done.stderr.startswith("license_report: error: ")
    assert "none.lock: cannot be read" in done.stderr and "Traceback" not in done.stderr


# -- make dist and verify_release.sh ---------------------------------------------------------
FAKE_DOCKER = """#!/bin/bash
# A stand-in for the docker command: what dist.sh and verify_release.sh ask of it.
case "$1" in
  version) exit 0 ;;
  image) [[ -n $FAKE_ID ]] || exit 1
         case "$4" in *Labels*) echo "$FAKE_LABEL" ;; *) echo "$FAKE_ID" ;; esac ;;
  save) printf 'an image archive' ;;
  load) echo "Loaded image: $FAKE_REF" ;;
  create) echo c0ffee ;;
  cp) cp "$FAKE_REPORT" "$3" ;;
  rm) ;;
  *) echo "fake docker: unexpected $*" >&2; exit 3 ;;
esac
"""


def _clone(tmp_path: Path) -> Path:
    """A fresh clone of this repository, with the work tree's files committed over it (the
    scripts under test may not be committed yet), so that it is clean."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, clone / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():
            target.unlink()
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "work tree"], cwd=clone, check=True)
    return clone


def _run(command, cwd, **env):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **env})


def _make_dist(clone: Path, **env):
    return _run(["make", "-s", "dist", f"PY={sys.executable}"], clone, **env)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """`make dist` in a fresh clone where no Docker daemon answers."""
    clone = _clone(tmp_path_factory.mktemp("dist"))
    done = _make_dist(clone)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dist: image: skipped: no Docker daemon answers" in done.stdout
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                            text=True).stdout.strip()
    return clone / "dist" / f"mgrb-artifact-{VERSION}-release", commit


def _copy(release_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "download"
    shutil.copytree(release_dir, copy)
    return copy


def _verify(folder: Path, cwd: Path, **env):
    cwd.mkdir(exist_ok=True)
    return _run(["bash", str(folder / "verify_release.sh")], cwd, **env)


def test_make_dist_makes_a_release_its_verify_script_accepts(release, tmp_path):
    folder, commit = release
    name = f"mgrb-artifact-{VERSION}"
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        ".zenodo.json", "CITATION.cff", "LICENSE", "RELEASE.json", "SHA256SUMS", "THIRD_PARTY_LICENSES.md",
        f"{name}-source.tar.gz", "requirements.lock", "verify_release.sh"])
    summed = [line.split()[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    assert sorted(summed) == sorted(p.name for p in folder.iterdir() if p.name != "SHA256SUMS")
    record = json.loads((folder / "RELEASE.json").read_text())
    assert (record["version"], record["commit"], record["tag"]) == (VERSION, commit, None)
    assert record["image"] == {"skipped": "no Docker daemon answers (docker version failed)"}
    assert (folder / "requirements.lock").read_bytes() == (ROOT / "requirements.lock").read_bytes()

    done = _verify(folder, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify: checksums: all 8 files match" in done.stdout
    assert "verify: image: none in this release (when it was made: no Docker daemon answers" in done.stdout
    assert done.stdout.rstrip().endswith("verify: the release checks out")
    source = tmp_path / name
    assert (source / "SOURCE_COMMIT").read_text() == commit
    shipped = (folder / "verify_release.sh").read_bytes()
    assert (source / "scripts" / "verify_release.sh").read_bytes() == shipped
    sys_path = subprocess.run([sys.executable, "-c", "import mgrb.version as v; print(v.describe())"],
                              cwd=source, capture_output=True, text=True, check=True).stdout
    assert f"'commit': '{commit}'" in sys_path  # an unpacked archive knows its commit

    again = _verify(folder, tmp_path)  # the source is there already: said, not overwritten
    assert again.returncode == 2 and "exists already" in again.stderr


@pytest.mark.parametrize("damage", ["changed", "missing", "listed outside"])
def test_verify_refuses_a_tampered_release(release, tmp_path, damage):
    folder = _copy(release[0], tmp_path)
    if damage == "changed":
        with open(folder / "requirements.lock", "a") as handle:
            handle.write("evil==1.0\n")
    elif damage == "missing":
        (folder / "LICENSE").unlink()
    else:
        with open(folder / "SHA256SUMS", "a") as handle:
            handle.write("0" * 64 + "  ../outside\n")
    done = _verify(folder, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verify: MISMATCH: " in done.stderr and "Traceback" not in done.stderr
    expected = {"changed": "requirements.lock: FAILED", "missing": "LICENSE: FAILED open or read",
                "listed outside": "the line for '../outside'"}[damage]
    assert expected in done.stderr
    assert not (tmp_path / f"mgrb-artifact-{VERSION}").exists()  # nothing unpacked


def test_dist_refuses_a_dirty_tree_unless_allowed(release, tmp_path):
    clone = release[0].parents[1]
    readme = clone / "README.md"
    committed = readme.read_text()
    readme.write_text(committed + "\nuncommitted\n")
    try:
        refused = _make_dist(clone)
        assert refused.returncode == 2
        assert "dist: error: the work tree has uncommitted changes" in refused.stderr
        allowed = _make_dist(clone, ALLOW_DIRTY="1", DIST_DIR=str(tmp_path / "dirty"))
        assert allowed.returncode == 0, allowed.stderr
        assert "the uncommitted changes are not in it" in allowed.stdout
        made = tmp_path / "dirty" / f"mgrb-artifact-{VERSION}-release"
        record = json.loads((made / "RELEASE.json").read_text())
        assert record["uncommitted_changes_left_out"] is True
    finally:
        readme.write_text(committed)


def _fake_docker(tmp_path: Path, **env) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", **env}


def test_dist_saves_the_image_and_verify_loads_it_and_checks_its_id(release, tmp_path, license_report):
    if _environment_lock() != "requirements.lock":
        # the release ships requirements.lock, and its license report must describe that
        # environment: make dist from this one is refused (dist.sh says why)
        pytest.skip("the release is made from the default (CUDA 13) environment; this is "
                    f"{_environment_lock()}'s")
    folder, commit = release
    clone = folder.parents[1]
    ref = f"mgrb-artifact:{VERSION}"
    env = _fake_docker(tmp_path, FAKE_ID=IMAGE_ID, FAKE_LABEL=commit, FAKE_REF=ref,
                       FAKE_REPORT=str(license_report), DIST_DIR=str(tmp_path / "dist"))
    done = _make_dist(clone, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    made = tmp_path / "dist" / f"mgrb-artifact-{VERSION}-release"
    assert (made / "IMAGE_ID").read_text() == f"{IMAGE_ID} {ref}\n"
    assert (made / f"mgrb-artifact-{VERSION}-image.tar.gz").stat().st_size > 0
    record = json.loads((made / "RELEASE.json").read_text())
    assert record["image"]["id"] == IMAGE_ID and "image's own" in record["third_party_licenses"]

    checked = _verify(made, tmp_path, **env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"verify: image: {ref} loaded, id {IMAGE_ID} as recorded" in checked.stdout

    other = _verify(made, tmp_path / "elsewhere", **{**env, "FAKE_ID": "sha256:" + "cd" * 32})
    assert other.returncode == 1 and f"IMAGE_ID says {IMAGE_ID}" in other.stderr

    no_daemon = _verify(made, tmp_path / "third", **{k: v for k, v in env.items() if k != "PATH"})
    assert no_daemon.returncode == 0, no_daemon.stderr
    assert re.search(r"image: not loaded \(no (Docker daemon answers|docker command here)\)", no_daemon.stdout)


def test_dist_refuses_an_image_built_from_another_commit(release, tmp_path, license_report):
    clone = release[0].parents[1]
    env = _fake_docker(tmp_path, FAKE_ID=IMAGE_ID, FAKE_LABEL=COMMIT, FAKE_REPORT=str(license_report),
                       DIST_DIR=str(tmp_path / "dist"))
    done = _make_dist(clone, **env)
    assert done.returncode == 2 and f"was built from {COMMIT}, not from" in done.stderr
    skipped = _make_dist(clone, **env, SKIP_IMAGE="1")
    assert skipped.returncode == 0 and "dist: image: skipped: SKIP_IMAGE=1" in skipped.stdout


# -- a tampered release is refused before anything is unpacked (issue 28) ----------------------
# A download whose SHA256SUMS was made again over changed files passes every checksum: what the
# archive holds is checked member by member before anything is written, by a verifier taken from
# this tree (not the download's own copy, which a tampered download replaces), and
# --expect-sha256 with the published digest refuses any such download outright.
VERIFIER = ROOT / "scripts" / "verify_release.sh"
SOURCE = f"mgrb-artifact-{VERSION}"


def _trusted(folder: Path, unpack: Path, *options: str, timeout: float = 60):
    """This tree's verifier on a download; one that hangs is killed with all it started."""
    unpack.mkdir(exist_ok=True)
    command = ["bash", str(VERIFIER), str(folder), "--unpack-to", str(unpack), *options]
    with subprocess.Popen(command, cwd=unpack.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _resum(folder: Path) -> None:
    """SHA256SUMS made again over the folder's files, as an attacker would."""
    names = sorted(p.name for p in folder.iterdir() if p.name != "SHA256SUMS" and p.is_file())
    (folder / "SHA256SUMS").write_text("".join(f"{_sha256(folder / n)}  {n}\n" for n in names))


def _rewrite_source(folder: Path, extra=(), replace=None) -> None:
    """The source archive written again with `extra` (TarInfo, bytes) members after the real ones,
    `replace` {member name: bytes, or None to leave it out} changing files, and SHA256SUMS made to match."""
    archive = folder / f"{SOURCE}-source.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(archive, "r:gz") as old, tarfile.open(fileobj=buffer, mode="w:gz",
                                                            format=tarfile.PAX_FORMAT) as new:
        for member in old:
            data = old.extractfile(member).read() if member.isfile() else None
            if replace and member.name in replace:
                data = replace[member.name]
                if data is None:
                    continue
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
        for member, data in extra:
            member.size = len(data or b"")
            new.addfile(member, io.BytesIO(data) if data else None)
    archive.write_bytes(buffer.getvalue())
    _resum(folder)


def _member(name: str, kind: bytes = b"0", mode: int = 0o644, link: str = ""):
    member = tarfile.TarInfo(name)
    member.type, member.mode, member.linkname = kind, mode, link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        member.devmajor, member.devminor = 1, 3  # /dev/null's numbers: no mknod needed to archive it
    return member


def _bad_members(tmp_path: Path) -> dict:
    filler = [(_member(f"{SOURCE}/filler/{i:05d}-" + "x" * 80), b"") for i in range(1000)]  # > 64 KB of names
    return {
        "setuid file": [(_member(f"{SOURCE}/bin/evil", mode=0o4755), b"#!/bin/sh\nid\n")],
        "setgid folder": [(_member(f"{SOURCE}/shared", tarfile.DIRTYPE, mode=0o2777), None)],
        "device node": [(_member(f"{SOURCE}/dev/null", tarfile.CHRTYPE, mode=0o666), None)],
        "FIFO": [(_member(f"{SOURCE}/pipe", tarfile.FIFOTYPE), None)],
        "hard link": [(_member(f"{SOURCE}/hostname", tarfile.LNKTYPE, link="/etc/hostname"), None)],
        "symlink outside": [(_member(f"{SOURCE}/etc", tarfile.SYMTYPE, link="/etc"), None)],
        "absolute path": [(_member(str(tmp_path / "escaped")), b"escaped\n")],
        "absolute before 64 KB of names": [(_member(str(tmp_path / "escaped")), b"escaped\n"), *filler],
        "'..' path": [(_member(f"{SOURCE}/../../escaped"), b"escaped\n")],
        "outside the folder": [(_member("elsewhere/evil.py"), b"print('hi')\n")],
        "a file twice": [(_member(f"{SOURCE}/pyproject.toml"), b'version = "666"\n')],
    }


BAD = ["setuid file", "setgid folder", "device node", "FIFO", "hard link", "symlink outside", "absolute path",
       "absolute before 64 KB of names", "'..' path", "outside the folder", "a file twice"]


@pytest.mark.parametrize("bad", BAD)
def test_verify_refuses_a_resummed_archive_member_before_unpacking(release, tmp_path, bad):
    folder = _copy(release[0], tmp_path)
    extra = _bad_members(tmp_path)[bad]
    _rewrite_source(folder, extra)
    unpack = tmp_path / "unpack"
    done = _trusted(folder, unpack)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verify: checksums: all 8 files match" in done.stdout  # SHA256SUMS was made again
    name = extra[0][0].name
    assert f"verify: MISMATCH: {SOURCE}-source.tar.gz: member {name}: " in done.stderr, done.stderr
    assert "nothing was unpacked" in done.stderr and "Traceback" not in done.stderr
    assert list(unpack.iterdir()) == [] and not (tmp_path / "escaped").exists()

    published = _sha256(release[0] / "SHA256SUMS")
    refused = _trusted(folder, unpack, "--expect-sha256", published)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"not the published {published}" in refused.stderr
    assert "checksums" not in refused.stdout and list(unpack.iterdir()) == []


@pytest.mark.parametrize("last", ["/etc/hostname", "/dev/zero", "link to /dev/zero", "FIFO"])
def test_every_sha256sums_line_names_a_plain_file_here(release, tmp_path, last):
    """The last line may lack its newline; a name may not lead elsewhere or block the reading."""
    folder = _copy(release[0], tmp_path)
    sums = (folder / "SHA256SUMS").read_text()
    if last.startswith("/"):
        if not Path(last).exists():
            pytest.skip(f"no {last} here")
        digest = _sha256(Path(last)) if last != "/dev/zero" else "0" * 64
        (folder / "SHA256SUMS").write_text(sums + f"{digest}  {last}")  # no newline
        expected = f"SHA256SUMS: the line for '{last}' is not 'sha256  file-name'"
    else:
        if last == "FIFO":
            os.mkfifo(folder / "notes.txt")
        else:
            (folder / "notes.txt").symlink_to("/dev/zero")
        (folder / "SHA256SUMS").write_text(sums + "0" * 64 + "  notes.txt")
        expected = "notes.txt: FAILED open or read (a "
    done = _trusted(folder, tmp_path / "unpack", timeout=30)  # a hang is a failure, not a wait
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert list((tmp_path / "unpack").iterdir()) == []


@pytest.mark.parametrize("commit", [".*", "", COMMIT.upper(), COMMIT, None])
def test_the_source_commit_is_a_commit_id_compared_as_text(release, tmp_path, commit):
    folder = _copy(release[0], tmp_path)
    _rewrite_source(folder, replace={f"{SOURCE}/SOURCE_COMMIT": None if commit is None else commit.encode()})
    done = _trusted(folder, tmp_path / "unpack")
    assert done.returncode == 1, done.stdout + done.stderr
    if commit in (COMMIT, None):  # a commit id, but not RELEASE.json's; or none at all
        assert (f"{SOURCE}-source.tar.gz is version {VERSION}, commit '{commit or 'none'}'; "
                f"RELEASE.json names version '{VERSION}', commit '{release[1]}'") in done.stderr
    else:
        assert f"its SOURCE_COMMIT holds '{commit}', not a commit id" in done.stderr
    assert list((tmp_path / "unpack").iterdir()) == []


def test_the_real_release_verifies_with_and_without_the_published_digest(release, tmp_path):
    folder, commit = release
    published = _sha256(folder / "SHA256SUMS")
    (folder / "gzip.py").write_text("raise SystemExit('the download ran its own code')\n")  # not imported
    try:
        plain = _trusted(folder, tmp_path / "plain")
        vouched = _trusted(folder, tmp_path / "vouched", f"--expect-sha256={published.upper()}")
    finally:
        (folder / "gzip.py").unlink()
    for done in plain, vouched:
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.rstrip().endswith("verify: the release checks out")
        assert "note: gzip.py is not in SHA256SUMS" in done.stdout
    assert "nothing outside this download vouches for it: pass the sha256 published beside the release's DOI " \
           "as --expect-sha256 DIGEST" in plain.stdout
    assert f"SHA256SUMS has sha256 {published}, the published one" in vouched.stdout
    assert "outside this download" not in vouched.stdout
    source = tmp_path / "vouched" / SOURCE
    assert (source / "SOURCE_COMMIT").read_text() == commit
    for path in [source, *source.rglob("*")]:
        mode = path.lstat().st_mode
        assert (path.is_dir() or path.is_file()) and not path.is_symlink(), path
        assert mode & 0o7022 == 0 and path.lstat().st_uid == os.getuid(), (path, oct(mode))
    assert os.access(source / "scripts" / "verify_release.sh", os.X_OK)
    assert list((tmp_path / "vouched").iterdir()) == [source]  # no work folder left behind

    bad = _trusted(folder, tmp_path / "bad", "--expect-sha256", "12345")
    assert bad.returncode == 2 and "--expect-sha256 12345: not a sha256" in bad.stderr


def test_dist_refuses_a_commit_with_symbolic_links(release, tmp_path):
    clone = release[0].parents[1]
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]

    def out(*command, **env):
        return subprocess.run([*git, *command], cwd=clone, capture_output=True, text=True, check=True,
                              env={**os.environ, **env}).stdout.strip()

    index = {"GIT_INDEX_FILE": str(tmp_path / "index")}  # HEAD and the work tree stay as they are
    out("read-tree", "HEAD", **index)
    blob = subprocess.run([*git, "hash-object", "-w", "--stdin"], cwd=clone, input="/etc", capture_output=True,
                          text=True, check=True).stdout.strip()
    out("update-index", "--add", "--cacheinfo", f"120000,{blob},etc-link", **index)
    commit = out("commit-tree", out("write-tree", **index), "-p", "HEAD", "-m", "a link")
    out("tag", "with-a-link", commit)
    try:
        done = _make_dist(clone, TAG="with-a-link", DIST_DIR=str(tmp_path / "dist"))
    finally:
        out("tag", "-d", "with-a-link")
    assert done.returncode == 2 and "with-a-link holds symbolic links (etc-link)" in done.stderr, done.stderr
