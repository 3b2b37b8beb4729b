"""The Dockerfile, the locks, pyproject.toml and `make setup` describe one environment (in two
CUDA variants: requirements.lock for CUDA 13, requirements-cu12.lock for CUDA 12)."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
# CUDA variant: its lock and its torch pins
VARIANTS = {"13": ("requirements.lock", "requirements/pins.txt"),
            "12": ("requirements-cu12.lock", "requirements/pins-cu12.txt")}
# what torch brings with it, and all the two locks may disagree on
TORCH_STACK = re.compile(r"^(torch|torchvision|triton|cuda-.*|nvidia-(?!ml-py).*)$")


def _lock(name: str = "requirements.lock") -> dict[str, str]:
    text = (ROOT / name).read_text()
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\;]+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{match.group(1)} has no hash in {name}"
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


@pytest.mark.parametrize("cuda", VARIANTS)
def test_every_project_dependency_is_locked_at_a_version_it_accepts(cuda):
    lock = VARIANTS[cuda][0]
    pins = _lock(lock)
    for requirement in _project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in pyproject.toml but not in {lock}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside pyproject's {requirement}")


@pytest.mark.parametrize("cuda", VARIANTS)
def test_torch_pins_agree_with_the_lock(cuda):
    lock, pins_file = VARIANTS[cuda]
    pins = _lock(lock)
    for line in (ROOT / pins_file).read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert pins[canonicalize_name(name)] == version, (lock, name)


def test_the_two_variants_differ_only_in_torch_and_its_cuda_libraries():
    """What `make lock CUDA=12` promises: every other package at requirements.lock's version,
    so that a result of either variant is made by the same NumPy, Pillow, OpenCV, ..."""
    main, variant = _lock(VARIANTS["13"][0]), _lock(VARIANTS["12"][0])
    differ = {name for name in main.keys() | variant.keys()
              if main.get(name) != variant.get(name) and not TORCH_STACK.match(name)}
    assert not differ, {name: (main.get(name), variant.get(name)) for name in sorted(differ)}
    assert main["torch"] != variant["torch"]


def test_setup_maps_each_cuda_variant_to_its_lock_and_refuses_others(tmp_path):
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    for cuda, (lock, _) in VARIANTS.items():
        assert f"{cuda}) LOCK={lock} ;;" in setup
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "CUDA": "11",
                                            "VENV": str(tmp_path / "venv")})
    assert result.returncode == 2 and "CUDA=11" in result.stderr and "12" in result.stderr
    assert not (tmp_path / "venv").exists()  # refused before anything was made
    refused = subprocess.run(["make", "-n", "setup", "CUDA=11"], cwd=ROOT, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "CUDA=11: use 13" in refused.stderr


@pytest.mark.parametrize("cuda", VARIANTS)
def test_make_picks_the_variant_for_setup_image_and_container_runs(cuda):
    lock = VARIANTS[cuda][0]
    suffix = "-cu12" if cuda == "12" else ""
    def dry(*words):
        return subprocess.run(["make", "-n", "-B", *words, f"CUDA={cuda}", "VENV=/nonexistent/v"],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"CUDA={cuda} VENV=/nonexistent/v bash scripts/setup.sh" in dry("setup")
    image = dry("image")
    assert f"--build-arg CUDA={cuda}" in image and f"-t mgrb-artifact:0.1.0{suffix} " in image
    assert f"mgrb-artifact:0.1.0{suffix} make reproduce" in dry("image-reproduce", "EXPERIMENTS=x")
    assert lock in dry("lock")


def test_make_keeps_the_variant_a_venv_was_made_with(tmp_path):
    """`make setup CUDA=12` is said once: later targets keep that environment."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").write_text("requirements-cu12.lock\n")
    out = subprocess.run(["make", "-n", "-B", "setup", f"VENV={venv}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "CUDA=12 " in out
    (venv / ".installed").write_text("")  # a stamp from before the variants: CUDA 13
    out = subprocess.run(["make", "-n", "-B", "setup", f"VENV={venv}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "CUDA=13 " in out


def test_make_setup_and_the_image_run_the_same_install_script():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "--require-hashes" in setup and '-r "$LOCK"' in setup
    assert "bash scripts/setup.sh" in (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN CUDA=\$\{CUDA\} .*bash scripts/setup\.sh", dockerfile, re.M)
    assert "COPY pyproject.toml requirements.lock requirements-cu12.lock" in dockerfile
    # no other pip install in the image: the script is the only way in
    assert "pip install" not in dockerfile


def test_the_image_python_matches_the_lock():
    """Debian's python3.11 in both stages: the venv's bin/python points at /usr/bin/python3.11."""
    lock_python = re.search(r"with Python (\d+\.\d+)", (ROOT / "requirements.lock").read_text()).group(1)
    for name, stage in _stages().items():
        assert re.search(rf"apt-get install [^\n]*python{lock_python}\b", stage), name
    assert f"PYTHON=/usr/bin/python{lock_python} " in _stages()["build"]


@pytest.mark.parametrize("cuda", VARIANTS)
def test_the_lock_was_made_by_the_makefile_command(cuda):
    lock, pins_file = VARIANTS[cuda]
    header = (ROOT / lock).read_text().split("\n\n")[0]
    makefile = (ROOT / "Makefile").read_text()
    for option in ("--generate-hashes", "--allow-unsafe", "--extra=test", "--extra=tui"):
        assert option in header
        assert option.replace("=", " ") in makefile
    assert f"--constraint={pins_file}" in header and f"--output-file={lock}" in header
    if cuda == "12":
        assert "--constraint=.lock-venv/shared-pins.txt" in header


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
