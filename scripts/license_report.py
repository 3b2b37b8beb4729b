"""The third-party license report: every package of requirements.lock with the license its
installed distribution declares (read by pip-licenses), every Debian package installed (dpkg-query,
with the License: fields of its machine-readable copyright file) and WordNet's license.

The same script runs on a development machine (.venv and the host's Debian packages) and in the
image's build, where it describes the image itself (Dockerfile: /opt/mgrb/THIRD_PARTY_LICENSES.md).

    python scripts/license_report.py [--python PY] [--lock requirements.lock] [--out FILE]
    python scripts/license_report.py --check FILE [--lock requirements.lock]

--check exits 1, naming them, when packages of the lock are missing from a report's Python table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = Path("/usr/share/doc")
# Where the WordNet database may be: NLTK's layout (the project's and the image's copies),
# then Debian's wordnet-base, which scripts/setup_wordnet.sh copies from.
NLTK_DIRS = [os.environ.get("MGRB_NLTK_DATA"), str(ROOT / ".nltk_data"), "/opt/nltk_data"]
DEBIAN_WORDNET = Path("/usr/share/wordnet")
WORDNET_COPYRIGHT = DOC / "wordnet-base" / "copyright"
# License strings that a redistributor has to read rather than trust to be open source.
ATTENTION = re.compile(r"proprietary|nvidia|unknown|commercial", re.I)


class ReportError(Exception):
    """A problem the person running this can fix; printed as one line, exit 2."""


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def lock_packages(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip-compile lock file."""
    try:
        lines = lock.read_text().splitlines()
    except OSError as error:
        raise ReportError(f"{lock}: cannot be read ({error.strerror})") from None
    found = {normalised(m[1]): m[2] for line in lines
             if (m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line))}
    if not found:
        raise ReportError(f"{lock}: no `name==version` line; not a pip-compile lock file")
    return found


def installed(python: str) -> list[dict]:
    """pip-licenses' view of every distribution `python` can import."""
    command = [sys.executable, "-m", "piplicenses", "--python", python, "--format=json",
               "--with-system", "--with-urls", "--with-license-file", "--from=mixed"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except OSError as error:
        raise ReportError(f"{command[0]}: cannot run pip-licenses ({error.strerror})") from None
    if done.returncode != 0:
        raise ReportError(f"pip-licenses failed for {python} (is pip-licenses installed beside "
                          f"{sys.executable}? `make setup` installs it): {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def license_file(entry: dict) -> str:
    path = entry.get("LicenseFile", "UNKNOWN")
    if path == "UNKNOWN":
        return "none in the distribution"
    parts = Path(path).parts
    index = max((i for i, part in enumerate(parts) if part.endswith((".dist-info", ".egg-info"))),
                default=len(parts) - 1)
    return "/".join(parts[index:])


def _terms(entry: dict) -> str:
    where = license_file(entry)
    return f"terms in {where}" if where != "none in the distribution" else \
        f"no license file in the distribution; see {entry.get('URL', 'its home page')}"


def python_section(lock: Path, python: str) -> tuple[list[str], list[str]]:
    locked = lock_packages(lock)
    found = {normalised(entry["Name"]): entry for entry in installed(python)}
    tool = subprocess.run([sys.executable, "-m", "piplicenses", "--version"], capture_output=True,
                          text=True).stdout.strip()
    lines = [f"## Python packages ({len(locked)}, every package of {lock.name})", "",
             f"Licenses as the installed distributions of `{python}` declare them, read by "
             f"{tool} (`--from=mixed`: the license expression or field, else the trove "
             "classifiers); the license file named is the one inside the installed distribution.",
             "", "| package | version | license | license file | home page |", "|---|---|---|---|---|"]
    attention = []
    for name, version in sorted(locked.items()):
        entry = found.get(name)
        if entry is None:
            lines.append(f"| {name} | {version} | not installed in {cell(python)}: unknown | - | - |")
            attention.append(f"Python {name} {version}: not installed where this report was made")
            continue
        shown = version if entry["Version"] == version else f"{version} (installed: {entry['Version']})"
        if entry["Version"] != version:
            attention.append(f"Python {name}: the lock says {version}, {entry['Version']} is installed")
        lines.append(f"| {name} | {cell(shown)} | {cell(entry['License'])} | "
                     f"{cell(license_file(entry))} | {cell(entry.get('URL', 'UNKNOWN'))} |")
        if ATTENTION.search(entry["License"]):
            attention.append(f"Python {name} {version}: {entry['License']} ({_terms(entry)})")
    extra = sorted(set(found) - set(locked))
    if extra:
        lines += ["", "Also installed, not in the lock: " + ", ".join(
            f"{name} {found[name]['Version']} ({cell(found[name]['License'])})" for name in extra) + "."]
    return lines + [""], attention


def debian_licenses(package: str) -> str:
    path = DOC / package / "copyright"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no copyright file installed"
    if not text.startswith("Format:"):
        return f"see {path} (not machine-readable)"
    names = dict.fromkeys(m.strip() for m in re.findall(r"^License:[ \t]*(\S[^\n]*)$", text, re.M))
    return "; ".join(names) or f"see {path}"


def debian_section() -> tuple[list[str], list[str]]:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
                              capture_output=True, text=True, timeout=120)
    except OSError:
        return ["## Debian packages", "", "No dpkg-query here: not a Debian system, none listed.", ""], []
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    rows = [(package, version) for status, package, version in rows if status.startswith("ii")]
    system = _os_name()
    lines = [f"## Debian packages ({len(rows)}, installed on {system})", "",
             "From `dpkg-query -W`; licenses are the `License:` fields of each package's "
             f"{DOC}/<package>/copyright where that file is machine-readable.", "",
             "| package | version | licenses |", "|---|---|---|"]
    attention = []
    for package, version in sorted(rows):
        licenses = debian_licenses(package)
        lines.append(f"| {package} | {cell(version)} | {cell(licenses)} |")
        if licenses == "no copyright file installed":
            attention.append(f"Debian {package} {version}: no copyright file installed")
    return lines + [""], attention


def _os_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "an unnamed system"
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?$', text, re.M)
    return match[1] if match else "an unnamed system"


def wordnet_section() -> list[str]:
    folders = [Path(d) / "corpora" / "wordnet" for d in NLTK_DIRS if d] + [DEBIAN_WORDNET]
    database = next((f for f in folders if (f / "data.noun").is_file()), None)
    lines = ["## WordNet", ""]
    if database is None:
        return lines + ["No WordNet database found (looked in "
                        + ", ".join(str(f) for f in folders) + "); none is shipped.", ""]
    candidates = [database / "LICENSE", WORDNET_COPYRIGHT]
    source = next((path for path in candidates if path.is_file()), None)
    lines.append(f"The WordNet 3.0 database in `{database}` (Princeton University), used for the "
                 "ontology and semantic hierarchies.")
    if source is None:
        return lines + ["", "Its license text was not found among the installed files (looked for "
                        + ", ".join(map(str, candidates)) + ").", ""]
    return lines + ["", f"Its license, as installed (`{source}`):", "", "```text",
                    source.read_text(errors="replace").rstrip(), "```", ""]


def report(lock: Path, python: str) -> str:
    where = "in the image" if os.environ.get("MGRB_IN_CONTAINER") else f"on {_os_name()}"
    py_lines, py_attention = python_section(lock, python)
    deb_lines, deb_attention = debian_section()
    attention = py_attention + deb_attention
    lines = ["# Third-party licenses", "",
             f"Generated by `scripts/license_report.py` {where}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. This project's own code is "
             "under the MIT license (LICENSE). What follows is what a copy of the environment "
             "redistributes, with the license each part declares.", "",
             "## Needs a reader's attention", "",
             *([f"- {cell(item)}" for item in attention] or ["- nothing: every license was found."]), "",
             *py_lines, *deb_lines, *wordnet_section()]
    return "\n".join(lines)


def check(report_path: Path, lock: Path) -> list[str]:
    """Packages of the lock that the report's Python table lacks (with the lock's version)."""
    try:
        text = report_path.read_text()
    except OSError as error:
        raise ReportError(f"{report_path}: cannot be read ({error.strerror})") from None
    section = text.split("## Python packages", 1)[-1].split("\n## ", 1)[0]
    listed = {m[1]: m[2] for m in re.finditer(r"^\| (\S+) \| (\S+)", section, re.M)}
    return [f"{name}=={version}" for name, version in sorted(lock_packages(lock).items())
            if listed.get(name) != version]


def environment_lock(python: str) -> Path:
    """The lock an environment was made from: scripts/setup.sh names it in the venv's stamp
    (requirements.lock or requirements-cu12.lock); requirements.lock when there is none."""
    stamp = Path(python).parent.parent / ".installed"
    try:
        named = stamp.read_text().strip()
    except OSError:
        named = ""
    return ROOT / (named if named in ("requirements.lock", "requirements-cu12.lock")
                   else "requirements.lock")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the environment to describe")
    parser.add_argument("--lock", type=Path, help="default: the lock the environment was made "
                                                  "from (its .installed stamp)")
    parser.add_argument("--out", type=Path, help="write here (default: standard output)")
    parser.add_argument("--check", type=Path, metavar="REPORT", help="check a report against the lock")
    args = parser.parse_args(argv)
    args.lock = args.lock or environment_lock(args.python)
    try:
        if args.check:
            missing = check(args.check, args.lock)
            if missing:
                print(f"{args.check}: {len(missing)} package(s) of {args.lock} missing: "
                      + ", ".join(missing), file=sys.stderr)
                return 1
            print(f"{args.check}: lists every package of {args.lock}")
            return 0
        text = report(args.lock, args.python)
        if args.out is None:
            print(text)
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
            print(f"license report: {args.out}")
    except ReportError as error:
        print(f"license_report: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
