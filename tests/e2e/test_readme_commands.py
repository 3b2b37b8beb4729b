"""Every command README.md shows runs as written on a fresh clone.

The commands are read from README at test time: every line of its shell blocks (without its
`# comment`), and every inline code span of its tables and prose that starts like a command
(`make `, `.venv/bin/`, `mgrb `, `python -m`, `docker `, or a program of ALLOW_LISTED). Each is
checked by the first rule that matches it, in a copy of the repository's tracked files (a fresh
clone) with the checkout's `.venv` and `.nltk_data` linked in (what `make setup` made) and the
digits run `make demo` trains (the Quick start):

- `make ...`: `make -n -B` with the arguments as written, every target out of date as on a
  fresh clone. It must exit 0 without a warning and print commands; every `mgrb` line it prints
  parses with the real command line, the names and globs it gives `mgrb reproduce` (after
  EXPERIMENTS= and the like are expanded) name experiments, and every `python -m` module exists.
- `.venv/bin/mgrb SUBCOMMAND ...`: the commands that read (READS) run for real. They exit 0,
  unless a run folder they name is missing on a fresh clone (e.g. the CIFAR-100 runs): then they
  exit with the status README documents for it (DOCUMENTED_MISSING_RUN_DIR) with one `mgrb:` line
  per problem, no traceback, and the output folder as it was. `run` and `reproduce` of digits
  experiments (seconds on a CPU) run for real; of the others, and the subcommands of NOT_RUN,
  the line parses with the real command line and is not run (GPU, network, or a terminal).
- `.venv/bin/python -m pytest PATHS`: with `--collect-only -q` added; exits 0, and every path
  given collects at least one test. Another `python -m MODULE`: the module exists and
  `MODULE --help` exits 0.
- `mgrb ...` without `.venv/bin/` (prose naming a subcommand, or a synopsis): the subcommand
  exists and every option named is one of its options.
- ALLOW_LISTED programs, each with its reason: run for real where this environment has them
  (cffconvert, from .venv/bin); otherwise checked for their documented name and options, and
  skipped.

A command that matches no rule fails test_every_readme_command_matches_a_rule by name."""

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from unit.test_readme_links import FENCE, MODULE, SHELL_LANGUAGES, _inline_code, _mgrb_arguments, \
    _shell_lines

# The e2e convention (tests/conftest.py marks tests/e2e slow as well): `make test-fast` skips it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV_MGRB = ROOT / ".venv" / "bin" / "mgrb"

# Programs whose commands need what this machine lacks, or that `make setup` installs in .venv
# without putting them on PATH: program -> why it is not simply run as written.
ALLOW_LISTED = {
    "docker": "needs a Docker daemon and the image `make image` builds; `make image-test` runs the "
              "documented lines against a real daemon",
    "nvidia-smi": "needs an NVIDIA GPU and its driver; run for real where nvidia-smi is installed",
    "cffconvert": "installed by `make setup` into .venv/bin (a test tool of pyproject.toml): run "
                  "for real with .venv/bin on PATH",
}
DOCKER_SUBCOMMANDS = {"run", "build", "image", "images", "load", "save", "pull", "push", "tag",
                      "info", "version", "ps", "exec", "logs", "inspect", "compose", "buildx"}
NVIDIA_SMI_OPTIONS = {"--query-gpu", "--format", "-L", "--list-gpus", "-q", "--query", "-i", "--id",
                      "-d", "--display", "-x", "--xml-format", "--help", "-h"}
NVIDIA_SMI_FIELDS = {"driver_version", "name", "uuid", "serial", "index", "pci.bus_id",
                     "memory.total", "memory.used", "memory.free", "compute_cap", "utilization.gpu",
                     "utilization.memory", "temperature.gpu", "power.draw", "power.limit",
                     "clocks.sm", "clocks.max.sm", "mig.mode.current", "vbios_version", "count"}
NVIDIA_SMI_FORMATS = {"csv", "noheader", "nounits"}

# `.venv/bin/mgrb` subcommands that only read (experiment files, run folders): run for real.
READS = {"list", "check", "report", "quickstart"}
# Subcommands that train: run for real when every experiment they name is a digits one.
TRAINS = {"run", "reproduce"}
NOT_RUN = {"data": "fetches CIFAR over the network",
           "tui": "a full-screen terminal application",
           "resume": "continues a run stopped part way, which a fresh clone has none of"}
# A command that reads a run folder a fresh clone lacks exits as README documents it: subcommand
# -> the sentence of README that says so (its `exit N` is the expected status).
DOCUMENTED_MISSING_RUN_DIR = {"report": "when a folder given is not a run folder (exit 2)"}

INLINE_COMMAND = re.compile(
    r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"  # VAR=value prefixes
    r"(?:make\s|\.venv/bin/|mgrb\s|(?:\S*/)?python3?\s+-m\s|"
    + "|".join(rf"{re.escape(program)}\s" for program in ALLOW_LISTED) + ")")
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
GLOB_CHARACTERS = re.compile(r"[*?\[]")


# ---------------------------------------------------------------------------------- extraction

@dataclass(frozen=True)
class Command:
    text: str  # as README shows it, comment removed, whitespace folded
    line: int  # README line where it starts

    def __str__(self):
        return f"README.md:{self.line}: `{self.text}`"


def _strip_comment(line: str) -> str:
    return re.sub(r"(?:^|\s)#.*$", "", line).strip()


def readme_commands(text: str) -> list[Command]:
    """The shell commands a markdown text shows, first occurrences in order."""
    found: list[Command] = []
    for match in FENCE.finditer(text):
        if match[1] not in SHELL_LANGUAGES:
            continue
        first_line = text.count("\n", 0, match.start(2)) + 1
        body = match[2]
        offset = 0
        for raw in re.split(r"(?<!\\)\n", body):
            line_number = first_line + offset
            offset += raw.count("\n") + 1
            line = re.sub(r"\\\n\s*", " ", raw)
            if match[1] == "console":
                if not line.startswith("$ "):
                    continue  # a console block's output
            line = line.removeprefix("$ ")
            command = " ".join(_strip_comment(line).split())
            if command:
                found.append(Command(command, line_number))
    without_blocks = FENCE.sub(lambda m: "\n" * m[0].count("\n"), text)
    for code in _inline_code(text):
        command = " ".join(code.split())
        if INLINE_COMMAND.match(command):
            start = without_blocks.find(f"`{code}`")
            found.append(Command(command, without_blocks.count("\n", 0, max(start, 0)) + 1))
    unique, seen = [], set()
    for command in found:
        if command.text not in seen:
            seen.add(command.text)
            unique.append(command)
    return unique


# ------------------------------------------------------------------------------ classification

class NoRule(Exception):
    pass


def _quote_placeholders(command: str) -> str:
    """`<name>` outside quotes, quoted: the shell would read it as a redirection."""
    out, quote, index = [], None, 0
    while index < len(command):
        char = command[index]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "<":
            match = PLACEHOLDER.match(command, index)
            if match:
                out.append(shlex.quote(match[0]))
                index = match.end()
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _words(command: str) -> list[str]:
    """The words of a command without its VAR=value prefixes."""
    words = shlex.split(_quote_placeholders(command))
    while words and ASSIGNMENT.match(words[0]):
        words.pop(0)
    return words


def _subcommands() -> set[str]:
    import argparse

    from mgrb.cli import build_parser

    return set(next(action.choices for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction)))


def classify(command: str) -> str:
    """The rule that checks a command; NoRule when none matches."""
    words = _words(command)
    if not words:
        raise NoRule(command)
    program = words[0]
    tool = program.removeprefix(".venv/bin/")
    if program == "make":
        return "make -n"
    if tool in ("python", "python3") and words[1:2] == ["-m"] and len(words) > 2:
        return "pytest --collect-only" if words[2] == "pytest" else "python -m --help"
    if program == ".venv/bin/mgrb":
        chosen = [word for word in words[1:] if word in _subcommands()]
        if not chosen:
            if {"--version", "--help", "-h"} & set(words[1:]):
                return "mgrb: reads"
            raise NoRule(command)
        if chosen[0] in READS:
            return "mgrb: reads"
        if chosen[0] in TRAINS:
            return "mgrb: trains"
        if chosen[0] in NOT_RUN:
            return "mgrb: parsed, not run"
        raise NoRule(command)
    if program == "mgrb":
        return "mgrb reference"
    if tool in ALLOW_LISTED and (program == tool or (ROOT / program).exists()):
        return f"allow-listed: {tool}"
    raise NoRule(command)


# ----------------------------------------------------------------------------------- the clone

def _environment(clone: Path | None = None) -> dict[str, str]:
    """This environment as a reviewer's shell has it: nothing of a calling make, of the
    container (MGRB_IN_CONTAINER) or of a chosen runs folder (MGRB_*)."""
    drop = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "PYTEST_ADDOPTS")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MGRB_") and key not in drop}
    if clone is not None:
        env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _shell(command: str, cwd: Path, timeout: int, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=env or _environment())


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The tracked files of the checkout, with its .venv and .nltk_data (`make setup`), after
    the Quick start's `make demo` (trained for real: it leaves runs/digits_5_1)."""
    if not VENV_MGRB.exists():
        pytest.skip("needs the .venv that `make setup` makes")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files")
    copy = tmp_path_factory.mktemp("clone")
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if not name or not (source.exists() or source.is_symlink()) or source.is_dir():
            continue  # deleted in the work tree, or a submodule
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy / name, follow_symlinks=False)
    for name in (".venv", ".nltk_data"):
        if (ROOT / name).exists():
            (copy / name).symlink_to(ROOT / name)
    # -o: the linked .venv counts as set up, whatever the copied files' times
    demo = _shell("make -o .venv/.installed demo", copy, timeout=600)
    assert demo.returncode == 0, f"`make demo` failed in the clone:\n{demo.stdout}\n{demo.stderr}"
    assert (copy / "runs" / "digits_5_1" / "results.json").is_file(), demo.stdout
    return copy


# ------------------------------------------------------------------------------------- checks

def _parser():
    from mgrb.cli import build_parser

    return build_parser()


def _parse(words: list[str], shown: str):
    try:
        return _parser().parse_args(words)
    except SystemExit:
        pytest.fail(f"{shown}: does not parse with mgrb's command line")


def _placeholder(word: str) -> bool:
    return bool(PLACEHOLDER.fullmatch(word))


def _reproduce_problems(clone: Path, parsed, shown: str) -> list[str]:
    """The names and globs given to `mgrb reproduce` name experiments; a glob reaches mgrb
    (no file of the folder it runs in matches it, so the shell passes it on unexpanded)."""
    from mgrb.errors import MGRBError
    from mgrb.pipeline.reproduce import select_experiments

    patterns = [p for item in parsed.experiments for p in item.replace(",", " ").split()
                if not _placeholder(p)]
    problems = [f"{shown}: the shell would expand {p} to {sorted(os.listdir(clone))}"
                for p in patterns if GLOB_CHARACTERS.search(p) and list(clone.glob(p))]
    try:
        select_experiments(clone / parsed.experiments_dir, patterns)
    except MGRBError as error:
        problems.append(f"{shown}: {error}")
    return problems


def _module_exists(clone: Path, module: str) -> bool:
    path = clone / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def check_make(clone: Path, command: str):
    dry = re.sub(r"(^|\s)make(?=\s|$)", r"\1make -n -B", _quote_placeholders(command), count=1)
    result = _shell(dry, clone, timeout=120)
    shown = f"`{command}` (as `{dry}`)"
    assert result.returncode == 0, f"{shown} exits {result.returncode}:\n{result.stdout}{result.stderr}"
    assert result.stdout.strip() and "Nothing to be done" not in result.stdout + result.stderr, \
        f"{shown} prints no command:\n{result.stdout}{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()
                and "clock skew" not in line.lower() and "modification time" not in line.lower()]
    assert not warnings, f"{shown} warns:\n{result.stderr}"
    problems = []
    for words in _shell_lines(result.stdout):
        arguments = _mgrb_arguments(words)
        if arguments is not None:
            printed = f"{shown} prints `{' '.join(words)}`"
            parsed = _parse(arguments, printed)
            if parsed.command == "reproduce":
                problems += _reproduce_problems(clone, parsed, printed)
        problems += [f"{shown}: no module {module}" for module in MODULE.findall(" ".join(words))
                     if not _module_exists(clone, module)]
    assert not problems, "\n".join(problems)


def _snapshot(folder: Path):
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _readme_says(sentence: str) -> bool:
    return " ".join(sentence.split()) in " ".join(README.read_text().split())


def check_mgrb_reads(clone: Path, command: str):
    words = _words(command)
    if {"--version", "--help", "-h"} & set(words[1:]):
        parsed = None  # argparse answers these itself, and exits
    else:
        parsed = _parse(words[1:], f"`{command}`")
    subcommand = getattr(parsed, "command", None)
    run_dirs = list(getattr(parsed, "runs", None) or []) if subcommand in ("check", "report") else []
    missing = [str(d) for d in run_dirs if not (clone / d).exists()]
    expected, out = 0, None
    if missing:
        assert subcommand in DOCUMENTED_MISSING_RUN_DIR, \
            f"`{command}` names {missing}, which a fresh clone lacks, and README documents no " \
            f"exit status for `mgrb {subcommand}` then"
        sentence = DOCUMENTED_MISSING_RUN_DIR[subcommand]
        assert _readme_says(sentence), f"README no longer says {sentence!r}"
        expected = int(re.search(r"exit (\d+)", sentence)[1])
    if subcommand == "report":
        out = clone / parsed.out
    before = _snapshot(out) if out is not None else None
    result = _shell(_quote_placeholders(command), clone, timeout=300)
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == expected, f"`{command}` exits {result.returncode}, not {expected}\n{output}"
    assert "Traceback" not in result.stderr, output
    if expected == 0:
        assert result.stdout.strip(), f"`{command}` prints nothing\n{output}"
        if out is not None:
            assert (out / "reproduction.md").is_file(), output
        return
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("mgrb: ") for line in lines), \
        f"`{command}`: not one `mgrb:` line per problem\n{output}"
    assert len(lines) <= len(missing) + 1, output
    for folder in missing:
        assert any(folder in line for line in lines), f"`{command}` does not name {folder}\n{output}"
    if out is not None:
        assert _snapshot(out) == before, f"`{command}` changed {parsed.out} although it failed"


def _named_experiments(clone: Path, parsed) -> list:
    from mgrb.cli import _experiment_path
    from mgrb.config.experiment import load_config
    from mgrb.pipeline.reproduce import select_experiments

    directory = clone / parsed.experiments_dir
    if parsed.command == "run":
        path = Path(parsed.experiment)
        if not path.is_absolute() and (clone / path).exists():
            path = clone / path
        return [load_config(path if path.exists() else _experiment_path(parsed.experiment, directory),
                            parsed.set or [])]
    patterns = [p for item in parsed.experiments for p in item.replace(",", " ").split()]
    chosen, _ = select_experiments(directory, patterns)
    return [config for _, config in chosen]


def check_mgrb_trains(clone: Path, command: str):
    words = _words(command)
    parsed = _parse(words[1:], f"`{command}`")
    configs = _named_experiments(clone, parsed)
    assert configs, f"`{command}` names no experiment"
    if any(config.dataset.name != "digits" for config in configs):
        pytest.skip(f"parsed and its experiments found; not run: "
                    f"{sorted({c.dataset.name for c in configs})} need a GPU and data a fresh clone lacks")
    result = _shell(command, clone, timeout=600)
    assert result.returncode == 0, f"`{command}` exits {result.returncode}\n{result.stdout}\n{result.stderr}"


def check_mgrb_not_run(clone: Path, command: str):
    words = _words(command)
    parsed = _parse(words[1:], f"`{command}`")
    pytest.skip(f"parses; not run: `mgrb {parsed.command}` {NOT_RUN[parsed.command]}")


def check_mgrb_reference(clone: Path, command: str):
    """`mgrb SUBCOMMAND [--option ...]` in prose or a synopsis: what it names exists."""
    import argparse

    parser = _parser()
    words = [w.strip("[]") for w in _words(command)[1:]]
    words = [w for w in words if w and w != "..." and not w.endswith("...")]
    complete = not any(c in command for c in "[]<>") and "..." not in command
    if complete:
        try:
            parser.parse_args(words)
            return
        except SystemExit:
            pass  # a subcommand named without its arguments: the walk below checks the names
    current, index, path = parser, 0, "mgrb"
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("-"):
            action = current._option_string_actions.get(word.split("=")[0])
            assert action is not None, f"`{command}`: `{path}` has no option {word}"
            if action.choices and "=" not in word and index < len(words) and action.nargs != 0:
                assert words[index] in action.choices, \
                    f"`{command}`: {word} takes one of {sorted(action.choices)}, not {words[index]}"
                index += 1
            elif action.nargs != 0 and "=" not in word and index < len(words) \
                    and not words[index].startswith("-") and words[index].isupper():
                index += 1  # its metavar, as a synopsis shows it
            continue
        subparsers = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if subparsers:
            assert word in subparsers[0].choices, \
                f"`{command}`: `{path}` has no subcommand {word} ({sorted(subparsers[0].choices)})"
            current, path = subparsers[0].choices[word], f"{path} {word}"
        elif word.isupper():
            metavars = {a.metavar or a.dest.upper() for a in current._actions if not a.option_strings}
            assert word in metavars, f"`{command}`: `{path}` has no argument {word} ({metavars})"


def check_pytest(clone: Path, command: str):
    words = _words(command)
    paths = [w for w in words[3:] if not w.startswith("-")]
    assert paths, f"`{command}` names no test file"
    result = _shell(f"{_quote_placeholders(command)} --collect-only -q", clone, timeout=300)
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"`{command} --collect-only -q` exits {result.returncode}\n{output}"
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    def prefix(path: str) -> str:
        return path if "::" in path else path.rstrip("/") + ("::" if path.endswith(".py") else "/")

    empty = [p for p in paths if not any(line.startswith(prefix(p)) for line in collected)]
    assert not empty, f"`{command}` collects no test from {empty}\n{output}"


def check_python_module(clone: Path, command: str):
    words = _words(command)
    module = words[2]
    assert _module_exists(clone, module), f"`{command}`: no module {module} in the repository"
    result = _shell(f"{clone / '.venv' / 'bin' / 'python'} -m {shlex.quote(module)} --help", clone,
                    timeout=120)
    assert result.returncode == 0, f"`{command}`: `-m {module} --help` exits {result.returncode}\n" \
                                   f"{result.stdout}\n{result.stderr}"


def check_allow_listed(clone: Path, command: str):
    words = _words(command)
    tool = words[0].removeprefix(".venv/bin/")
    reason = ALLOW_LISTED[tool]
    if tool == "cffconvert":
        assert (clone / ".venv" / "bin" / "cffconvert").exists(), "`make setup` did not install cffconvert"
        result = _shell(_quote_placeholders(command), clone, timeout=120, env=_environment(clone))
        assert result.returncode == 0 and result.stdout.strip(), \
            f"`{command}` exits {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        if "bibtex" in words:
            assert result.stdout.lstrip().startswith("@"), result.stdout
        return
    if tool == "docker":
        assert len(words) > 1 and words[1] in DOCKER_SUBCOMMANDS, \
            f"`{command}`: not a docker subcommand ({sorted(DOCKER_SUBCOMMANDS)})"
        pytest.skip(f"docker: {reason}")
    if tool == "nvidia-smi":
        for word in words[1:]:
            option, _, value = word.partition("=")
            assert option in NVIDIA_SMI_OPTIONS, f"`{command}`: nvidia-smi has no option {option}"
            if option == "--query-gpu":
                unknown = set(value.split(",")) - NVIDIA_SMI_FIELDS
                assert not unknown, f"`{command}`: nvidia-smi --query-gpu has no field {unknown}"
            if option == "--format":
                unknown = set(value.split(",")) - NVIDIA_SMI_FORMATS
                assert not unknown, f"`{command}`: nvidia-smi --format has no {unknown}"
        if shutil.which("nvidia-smi"):
            result = _shell(command, clone, timeout=60)
            assert result.returncode == 0, f"`{command}` exits {result.returncode}\n{result.stderr}"
            return
        pytest.skip(f"nvidia-smi: {reason}")
    raise AssertionError(f"ALLOW_LISTED {tool} has no check")  # pragma: no cover


CHECKS = {
    "make -n": check_make,
    "mgrb: reads": check_mgrb_reads,
    "mgrb: trains": check_mgrb_trains,
    "mgrb: parsed, not run": check_mgrb_not_run,
    "mgrb reference": check_mgrb_reference,
    "pytest --collect-only": check_pytest,
    "python -m --help": check_python_module,
    **{f"allow-listed: {tool}": check_allow_listed for tool in ALLOW_LISTED},
}

COMMANDS = readme_commands(README.read_text())


# -------------------------------------------------------------------------------------- tests

def test_the_extractor_sees_blocks_table_cells_and_prose():
    text = ("Intro with `make` alone, `runs/x`, and `make demo` in prose,\n"
            "wrapped `make reproduce\nEXPERIMENTS=<name>` too.\n\n"
            "```sh\nmake setup CUDA=12   # the environment\n"
            "# a whole-line comment\n"
            ".venv/bin/mgrb report runs/a \\\n   --out reports\n\n"
            "nvidia-smi --query-gpu=driver_version --format=csv,noheader\n```\n\n"
            "```text\nmake not-a-command\n```\n\n"
            "```console\n$ make kick-the-tires\nsome output\n```\n\n"
            "| claim | command |\n|---|---|\n| A2 | `.venv/bin/python -m pytest tests/e2e/x.py` |\n"
            "| A5 | `IMAGE_TEST_BASE=pinned make image-test` |\n"
            "Cite with `cffconvert -f bibtex`; see `docker run` and `mgrb check`.\n")
    assert [c.text for c in readme_commands(text)] == [
        "make setup CUDA=12", ".venv/bin/mgrb report runs/a --out reports",
        "nvidia-smi --query-gpu=driver_version --format=csv,noheader", "make kick-the-tires",
        "make demo", "make reproduce EXPERIMENTS=<name>", ".venv/bin/python -m pytest tests/e2e/x.py",
        "IMAGE_TEST_BASE=pinned make image-test", "cffconvert -f bibtex", "docker run", "mgrb check"]
    assert [classify(c.text) for c in readme_commands(text)] == [
        "make -n", "mgrb: reads", "allow-listed: nvidia-smi", "make -n", "make -n", "make -n",
        "pytest --collect-only", "make -n", "allow-listed: cffconvert", "allow-listed: docker",
        "mgrb reference"]
    for unknown in ("bash scripts/setup.sh", "cd /tmp", ".venv/bin/ruff check .", ".venv/bin/mgrb frobnicate"):
        with pytest.raises(NoRule):
            classify(unknown)
    assert _quote_placeholders("make x E=<name> F='<kept>'") == "make x E='<name>' F='<kept>'"


def test_readme_shows_enough_commands():
    assert len(COMMANDS) >= 10, f"README yields only {[c.text for c in COMMANDS]}: is the extractor broken?"


def test_every_readme_command_matches_a_rule():
    unmatched = []
    for command in COMMANDS:
        try:
            classify(command.text)
        except NoRule:
            unmatched.append(str(command))
    assert not unmatched, ("README shows commands that no rule of tests/e2e/test_readme_commands.py "
                           "checks; add a rule (or an ALLOW_LISTED program, with its reason):\n"
                           + "\n".join(unmatched))


@pytest.mark.parametrize("command", COMMANDS, ids=[c.text for c in COMMANDS])
def test_readme_command_runs_as_written(command, clone):
    try:
        rule = classify(command.text)
    except NoRule:
        pytest.fail(f"{command}: no rule checks it (test_every_readme_command_matches_a_rule)")
    CHECKS[rule](clone, command.text)
