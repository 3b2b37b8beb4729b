"""`make bench`'s fast step (benchmarks/bench_step.FastStep, the trainer's own numerics and
losses) on a simulated CUDA device, for CIFAR and ImageNet shapes, images on the GPU and in
pinned host memory: what `python -m benchmarks.simulated_steps` records."""

import json

import pytest

from benchmarks import simulated_steps

from conftest import DEVICE_CHOICES


@pytest.mark.parametrize("path", list(simulated_steps.PATHS))
def test_a_mid_epoch_step_neither_reads_nor_waits_for_a_copy(path):
    row = simulated_steps.record_step(*simulated_steps.PATHS[path])
    assert row["device"] == "cuda:0"
    assert row["numerics"]["precision"] == "bf16" and row["numerics"]["channels_last"]
    assert row["images_resident"] == path.endswith("resident")
    assert row["host_reads"] == 0, row["host_reads_at"]
    assert row["blocking_copies"] == 0, row["blocking_copies_at"]
    assert row["copies"] == (0 if row["images_resident"] else 1)  # the batch, asynchronously
    assert row["aten_ops"] > 100
    print(f"{path}: {row['aten_ops']} ATen ops a step; most frequent {row['top_ops']}")


@pytest.mark.parametrize("choice", DEVICE_CHOICES)
def test_every_device_choice_reaches_the_same_step(choice):
    """bench_step.py --device cuda crashed on its first batch before devices were indexed."""
    assert simulated_steps.record_step("cifar", True, device_choice=choice)["device"] == "cuda:0"


def test_the_command_writes_its_record(tmp_path, capsys):
    assert simulated_steps.main(["--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "simulated-cuda-steps.json").read_text())
    assert set(record["paths"]) == set(simulated_steps.PATHS)
    assert "ATen ops" in capsys.readouterr().out
