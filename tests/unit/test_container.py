"""What the image promises, read from its Dockerfile and the Makefile, and the documented
`docker run` lines held to the Makefile's. `make image-test` builds and runs the image itself;
these checks run everywhere, without Docker."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mgrb.version import version

ROOT = Path(__file__).parents[2]


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _final_stage() -> str:
    return _dockerfile().rsplit("\nFROM ", 1)[1]


def test_every_input_is_the_pinned_base_or_a_package_registry():
    dockerfile = _dockerfile()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert re.fullmatch(r"debian:bookworm-slim@sha256:[0-9a-f]{64}", base)
    sources = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert sources == ["${BUILD_BASE_IMAGE}", "${BASE_IMAGE}"]
    assert "ARG BUILD_BASE_IMAGE=${BASE_IMAGE}" in dockerfile
    # no image copied from (COPY --from=<image>), no download by URL, no second CUDA
    assert set(re.findall(r"--from=(\S+)", dockerfile)) == {"build"}
    assert not re.search(r"\b(curl|wget|ADD)\b|https?://(?!github.com/mgrb-artifact)", dockerfile)
    assert "nvidia/cuda" not in dockerfile and "# syntax=" not in dockerfile


def test_the_final_image_is_ready_for_gpus_and_compilers_and_never_root():
    final = _final_stage()
    for env in ("NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_DRIVER_CAPABILITIES=compute,utility"):
        assert env in final
    install = re.search(r"apt-get install [^&]*", final).group(0).split()
    for package in ("gcc", "g++", "libc6-dev", "libpython3.11-dev", "openssl", "tini"):
        assert package in install, package
    assert re.search(r"^USER 1000:1000$", final, re.M)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in final
    assert 'org.opencontainers.image.revision="${SOURCE_COMMIT}"' in final
    assert "ca-certificates" not in final  # the site's certificates belong to the build stage only


def _make_line(target: str, **variables: str) -> list[str]:
    """The docker command `make -n TARGET` prints, as words."""
    settings = [f"{name}={value}" for name, value in variables.items()]
    printed = subprocess.run(["make", "-s", "-n", target, *settings], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    (line,) = [line for line in printed.splitlines() if line.startswith("docker run")]
    return shlex.split(line)


def _documented_lines(text: str) -> list[list[str]]:
    """Every `docker run` command of a text, continuation lines joined, as words."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line, comments=True) for line in joined.splitlines()
            if line.strip().startswith("docker run")]


IMAGE_ID_FLAG = ("MGRB_IMAGE_ID=$(docker image inspect --format '{{.Id}}' "
                 f"mgrb-artifact:{version()} 2>/dev/null)")


def _without_image_id(words: list[str]) -> list[str]:
    """The line without `-e MGRB_IMAGE_ID=...`, which make adds so that results.json records the
    image (docs/container.md says so beside its line rather than lengthen it)."""
    index = words.index(IMAGE_ID_FLAG)
    assert words[index - 1] == "-e"
    return words[:index - 1] + words[index + 1:]


def _normalised(words: list[str]) -> list[str]:
    # what the shell would expand in the documented line, spelled as make spells it here
    return [word.replace("$PWD", str(ROOT)).replace("$(id -u):$(id -g)", "USER") for word in words]


@pytest.mark.parametrize("where", ["docs/container.md", "mgrb/resources/quickstart.txt"])
def test_the_documented_reproduce_line_is_the_makefiles(where):
    documented = [line for line in _documented_lines((ROOT / where).read_text())
                  if "make" in line and "reproduce" in line]
    assert documented, f"{where} documents no `docker run ... make reproduce` line"
    made = _make_line("image-reproduce", EXPERIMENTS="c100_*", DATA=f"{ROOT}/data", RUNS=f"{ROOT}/runs",
                      DOCKER_USER="USER")
    for line in documented:
        assert _normalised(line) == _without_image_id(made), where


def test_containers_are_told_their_image_id():
    """An image cannot know its own id: every container make starts is told it, and the image
    records where its source came from."""
    for target in ("image-reproduce", "image-bench", "image-gpu-check", "shell", "image-tui"):
        words = _make_line(target)
        assert words[words.index(IMAGE_ID_FLAG) - 1] == "-e", target
    final = _final_stage()
    assert re.search(r"^ENV .*MGRB_SOURCE_COMMIT=\$\{SOURCE_COMMIT\}", final, re.M | re.S)
    # the license and the third-party report travel in the image
    assert re.search(r"^COPY .*\bLICENSE\b.* \./$", _dockerfile().split("\nFROM ")[1], re.M)
    assert "/opt/nltk_data/corpora/wordnet/LICENSE" in _dockerfile()
    assert "--out /opt/mgrb/THIRD_PARTY_LICENSES.md" in final


def test_containers_mount_data_read_only_drop_privileges_and_honour_local_experiments():
    for target in ("image-reproduce", "image-bench", "image-gpu-check", "shell", "image-tui"):
        words = _make_line(target)
        assert f"{ROOT}/data:/data:ro" in words, target
        assert f"{ROOT}/experiments:/opt/mgrb/experiments:ro" in words, target
        for flag in ("--cap-drop", "--security-opt", "--pids-limit", "--user"):
            assert flag in words, (target, flag)
        assert words[words.index("--user") + 1].split(":")[0] != "0", target
    assert "--network" not in _make_line("shell")  # the one place a user may want to install something
    assert "--gpus" not in _make_line("image-reproduce", GPUS="")


def test_mgrb_run_refuses_to_be_process_1(monkeypatch, capsys):
    """Without an init, `mgrb run` would be pid 1, which run.lock readers refuse (a signal to it
    reaches the whole container)."""
    import mgrb.cli

    monkeypatch.setattr(mgrb.cli.os, "getpid", lambda: 1)
    assert mgrb.cli.main(["--experiments-dir", str(ROOT / "experiments"), "run", "digits_5_1"]) != 0
    error = capsys.readouterr().err
    assert error.startswith("mgrb: error: mgrb runs as process 1") and "docker run --init" in error
    assert mgrb.cli.main(["--experiments-dir", str(ROOT / "experiments"), "list"]) == 0  # reading is fine


def test_image_test_refuses_an_unknown_cuda12_mode_before_it_starts_anything(tmp_path):
    # Only the tools the script needs before its checks: were the check gone, it would stop at
    # the first missing one (docker, apt-get) instead of installing or starting anything.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "dirname", "sed"):
        (tools / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([str(tools / "bash"), str(ROOT / "scripts/image_test.sh")], capture_output=True,
                          text=True, timeout=60, env={"PATH": str(tools), "IMAGE_TEST_CUDA12": "whole"})
    assert done.returncode == 2
    assert done.stderr.strip() == "image-test: IMAGE_TEST_CUDA12: auto, full, stage or 0, not 'whole'"
    assert "dockerd" not in done.stdout and not done.stdout.strip()


def test_image_test_builds_a_stage_the_dockerfile_names():
    # CI builds only the CUDA 12 variant's build stage (IMAGE_TEST_CUDA12=stage, .ci/run), by name
    script = (ROOT / "scripts/image_test.sh").read_text()
    targets = set(re.findall(r"--target (\w+)", script))
    assert targets == {"build"}
    assert re.search(r"^FROM \S+ AS build$", _dockerfile(), re.M)
    assert "IMAGE_TEST_CUDA12=stage make image-test" in (ROOT / ".ci/run").read_text()
