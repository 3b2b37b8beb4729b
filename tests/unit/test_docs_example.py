"""The experiment file shown in docs/experiment-files.md is the real experiments/digits_5_1.yaml
in every section it shows (it once kept a memory and a learning rate the file no longer had)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SHOWN = ("name", "dataset", "protocol", "model", "method", "hierarchy")


def test_the_documented_example_is_the_demo_file():
    page = (ROOT / "docs" / "experiment-files.md").read_text()
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", page, re.S).group(1))
    real = yaml.safe_load((ROOT / "experiments" / "digits_5_1.yaml").read_text())
    assert example["name"] == real["name"]
    for section in SHOWN[1:]:
        assert example[section] == real[section], section
    for key, value in example["train"].items():
        assert real["train"][key] == value, f"train.{key}"


def test_make_data_takes_the_data_folder_it_is_given():
    """`make data DATA=/x` checks /x (it used to check ./data whatever DATA said)."""
    import subprocess

    def dry_run(*variables):
        done = subprocess.run(["make", "-n", "data", *variables], cwd=ROOT, capture_output=True,
                              text=True, check=True, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
        return done.stdout.strip().splitlines()[-1]

    assert dry_run("DATA=/x").endswith("mgrb data --root /x")
    assert dry_run().endswith("mgrb data")


def test_make_gpu_check_writes_outside_the_tracked_tree():
    import subprocess

    done = subprocess.run(["make", "-n", "gpu-check"], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    words = done.stdout.strip().splitlines()[-1].split()
    for option in ("--out", "--nvml-out"):
        target = Path(words[words.index(option) + 1])
        assert target == ROOT / "runs" / "gpu-check", (option, target)  # runs/ is ignored
