"""The Dockerfile, requirements.lock, pyproject.toml and `make setup` describe one environment."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent


def _lock() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\;]+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{match.group(1)} has no hash in requirements.lock"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _stages() -> dict[str, str]:
    """The Dockerfile's stages by name (the unnamed last one: "final")."""
    stages = {}
    for block in (ROOT / "Dockerfile").read_text().split("\nFROM ")[1:]:
        header = block.split("\n", 1)[0].split()
        stages[header[2] if len(header) == 3 and header[1] == "AS" else "final"] = block
    return stages


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["tui"]]


def test_every_project_dependency_is_locked_at_a_version_it_accepts():
    pins = _lock()
    for requirement in _project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in pyproject.toml but not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}")


def test_torch_pins_agree_with_the_lock():
    pins = _lock()
    for line in (ROOT / "requirements" / "pins.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert pins[canonicalize_name(name)] == version


def test_make_setup_and_the_image_run_the_same_install_script():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "--require-hashes" in setup and "-r requirements.lock" in setup
    assert "bash scripts/setup.sh" in (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN .*bash scripts/setup\.sh", dockerfile, re.M)
    assert "COPY pyproject.toml requirements.lock" in dockerfile
    # no other pip install in the image: the script is the only way in
    assert "pip install" not in dockerfile


def test_the_image_python_matches_the_lock():
    """Debian's python3.11 in both stages: the venv's bin/python points at /usr/bin/python3.11."""
    lock_python = re.search(r"with Python (\d+\.\d+)", (ROOT / "requirements.lock").read_text()).group(1)
    for name, stage in _stages().items():
        assert re.search(rf"apt-get install [^\n]*python{lock_python}\b", stage), name
    assert f"PYTHON=/usr/bin/python{lock_python} " in _stages()["build"]


def test_the_lock_was_made_by_the_makefile_command():
    header = (ROOT / "requirements.lock").read_text().split("\n\n")[0]
    makefile = (ROOT / "Makefile").read_text()
    for option in ("--generate-hashes", "--allow-unsafe", "--extra=test", "--extra=tui",
                   "--constraint=requirements/pins.txt"):
        assert option in header
        assert option.replace("=", " ") in makefile


def test_the_image_runs_as_a_non_root_user_with_data_and_runs_mounts():
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 1000:1000$", final_stage, re.M)
    assert 'VOLUME ["/data", "/runs"]' in final_stage
    for label in ("title", "source", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in final_stage


def test_hadolint_passes():
    result = subprocess.run([str(BIN / "hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_passes():
    result = subprocess.run([str(BIN / "ruff"), "check", "mgrb", "tests"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_of_the_project_is_copied_into_the_image():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    build_stage = _stages()["build"]
    for package in packages:
        assert f"COPY {package} ./{package}" in build_stage, package


def test_every_script_a_make_target_runs_is_copied_into_the_image():
    """`make bench` inside the image (make image-bench) needs its folder there too."""
    makefile = (ROOT / "Makefile").read_text()
    build_stage = _stages()["build"]
    modules = re.findall(r"\$\(PY\) -m ([\w.]+)", makefile)
    assert modules, "the Makefile runs no module with $(PY) -m"
    for module in modules:
        folder = module.split(".")[0]
        if folder in ("pytest", "pip"):
            continue
        assert f"COPY {folder} ./{folder}" in build_stage, module
