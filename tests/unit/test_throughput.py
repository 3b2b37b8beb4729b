"""Measured throughput: `make bench`'s files in <runs>/.bench/ and the projected hours that
`mgrb list` and the launcher derive from them. The measurements here are synthetic inputs
written in the bench's format, with a device name that says so: files from before per-shape
rates (model_tflops alone), files with `shapes`, and the data benchmark's files beside them."""

import json
import os
from pathlib import Path

import pytest

from artifact.core.experiments import ExperimentRow, load_experiments
from mgrb.cli import main
from mgrb.config.experiment import load_config
from mgrb.perf.estimate import projected_hours, projection_shape, training_flops
from mgrb.perf.throughput import (CIFAR_SHAPE, IMAGENET_SHAPE, Measurement, latest_data_measurement,
                                  latest_gpu_measurement, record, record_data)

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _bench(runs, device="synthetic test GPU", tflops=100.0, when="2026-11-25 10:00:00 UTC",
           device_type="cuda", **extra):
    return record(runs, {"device": device, "device_type": device_type, "model_tflops": tflops,
                         "measured_at": when, **extra})


def _shapes(cifar=100.0, imagenet=None, **more):
    """A `shapes` block as bench_step.py writes it (the fields a reader uses, and a few more)."""
    shapes = {CIFAR_SHAPE: {"label": "32x32 ResNet-34 step", "model_tflops": cifar, "batch": 128}}
    if imagenet is not None:
        shapes[IMAGENET_SHAPE] = {"label": "224x224 ResNet-18 step", "model_tflops": imagenet,
                                  "batch": 128, "images_resident": True}
    return {**shapes, **more}


def _config(name):
    return load_config(EXPERIMENTS / f"{name}.yaml")


def test_no_measurement_keeps_the_files_assumed_estimate(tmp_path):
    config = load_config(EXPERIMENTS / "c100_ont_10_10.yaml")
    hours, basis = projected_hours(config, latest_gpu_measurement(tmp_path))
    assert hours == config.estimate.gpu_hours
    assert "assumed" in basis


def test_a_gpu_measurement_gives_hours_from_the_measured_rate(tmp_path):
    _bench(tmp_path, tflops=100.0)
    config = load_config(EXPERIMENTS / "c100_ont_10_10.yaml")
    hours, basis = projected_hours(config, latest_gpu_measurement(tmp_path))
    assert hours == pytest.approx(training_flops(config) / 100e12 / 3600)
    assert "100 TFLOP/s measured on synthetic test GPU" in basis and "2026-11-25" in basis


def test_the_newest_gpu_measurement_wins_and_cpu_or_broken_files_are_passed_over(tmp_path):
    _bench(tmp_path, device="older GPU", tflops=10.0, when="2026-11-01 00:00:00 UTC")
    _bench(tmp_path, device="newer GPU", tflops=20.0, when="2026-11-20 00:00:00 UTC")
    _bench(tmp_path, device="CPU x86_64", tflops=0.1, when="2026-11-24 00:00:00 UTC",
           device_type="cpu")
    (tmp_path / ".bench" / "half-written.json").write_text('{"device": "x", "device_ty')
    (tmp_path / ".bench" / "zero.json").write_text(json.dumps(
        {"device": "z", "device_type": "cuda", "model_tflops": 0, "measured_at": "2027"}))
    measurement = latest_gpu_measurement(tmp_path)
    assert (measurement.device, measurement.model_tflops) == ("newer GPU", 20.0)


def test_the_digits_demo_keeps_its_own_estimate(tmp_path):
    _bench(tmp_path)
    config = load_config(EXPERIMENTS / "digits_5_1.yaml")
    assert projected_hours(config, latest_gpu_measurement(tmp_path))[0] is None


def _listing(runs, capsys):
    assert main(["--experiments-dir", str(EXPERIMENTS), "list", "--json", "--runs-dir", str(runs)]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_mgrb_list_uses_the_measured_rate(tmp_path, capsys):
    before = _listing(tmp_path, capsys)["c100_ont_10_10"]
    _bench(tmp_path, tflops=200.0)
    after = _listing(tmp_path, capsys)["c100_ont_10_10"]
    config = load_config(EXPERIMENTS / "c100_ont_10_10.yaml")
    assert before["estimated_gpu_hours"] == config.estimate.gpu_hours
    assert after["estimated_gpu_hours"] == pytest.approx(training_flops(config) / 200e12 / 3600)
    assert "measured on synthetic test GPU" in after["estimate_basis"]
    assert main(["--experiments-dir", str(EXPERIMENTS), "list", "--runs-dir", str(tmp_path)]) == 0
    assert "from 200 TFLOP/s measured on synthetic test GPU" in capsys.readouterr().out


def test_the_launcher_table_uses_the_measured_rate(tmp_path):
    _bench(tmp_path, tflops=50.0)
    rows = {row.name: row for row in load_experiments(EXPERIMENTS, tmp_path)
            if isinstance(row, ExperimentRow)}
    config = load_config(EXPERIMENTS / "mini_ont_10_10.yaml")
    assert rows["mini_ont_10_10"].gpu_hours == pytest.approx(
        training_flops(config) / 50e12 / 3600)
    assert "measured on synthetic test GPU" in rows["mini_ont_10_10"].hours_basis


# -- per-shape rates ---------------------------------------------------------------------------
def test_an_old_file_projects_imagenet_from_the_cifar_rate_and_says_so(tmp_path):
    _bench(tmp_path, tflops=100.0)  # the format before `shapes`: model_tflops alone
    measurement = latest_gpu_measurement(tmp_path)
    assert measurement.shapes == {} and measurement.tflops(IMAGENET_SHAPE) is None
    config = _config("i100_ont_50_10")
    hours, basis = projected_hours(config, measurement)
    assert hours == pytest.approx(training_flops(config) / 100e12 / 3600)
    assert basis.endswith("100 TFLOP/s measured on synthetic test GPU by `make bench` in the bf16 "
                          "fast mode (2026-11-25, 32x32 ResNet-34 step; no ImageNet-shaped "
                          "measurement)")
    assert projection_shape(config, measurement) == (CIFAR_SHAPE, "no ImageNet-shaped measurement")
    # a CIFAR experiment's basis names its shape, with nothing missing to report
    _, basis = projected_hours(_config("c100_ont_10_10"), measurement)
    assert basis.endswith("(2026-11-25, 32x32 ResNet-34 step)")


def test_a_file_with_both_shapes_projects_each_data_set_from_its_own(tmp_path):
    _bench(tmp_path, tflops=100.0, shapes=_shapes(cifar=100.0, imagenet=61.2))
    measurement = latest_gpu_measurement(tmp_path)
    assert measurement.model_tflops == 100.0 and measurement.shapes == {IMAGENET_SHAPE: 61.2}
    imagenet = _config("i100_ont_50_10")
    hours, basis = projected_hours(imagenet, measurement)
    assert hours == pytest.approx(training_flops(imagenet) / 61.2e12 / 3600)
    assert basis == ("projection: 3,130 PFLOP of training at 61.2 TFLOP/s measured on synthetic "
                     "test GPU by `make bench` in the bf16 fast mode (2026-11-25, 224x224 ResNet-18 step)")
    cifar = _config("c100_ont_10_10")
    hours, basis = projected_hours(cifar, measurement)
    assert hours == pytest.approx(training_flops(cifar) / 100e12 / 3600)
    assert basis.endswith("at 100 TFLOP/s measured on synthetic test GPU by `make bench` "
                          "in the bf16 fast mode (2026-11-25, 32x32 ResNet-34 step)")
    # miniImageNet's 84x84 step has no measurement of its own: the CIFAR one, no "missing" note
    mini = _config("mini_ont_10_10")
    hours, basis = projected_hours(mini, measurement)
    assert hours == pytest.approx(training_flops(mini) / 100e12 / 3600)
    assert basis.endswith("(2026-11-25, 32x32 ResNet-34 step)")
    assert projected_hours(_config("digits_5_1"), measurement)[0] is None


def test_the_top_level_rate_is_the_cifar_one_whatever_shapes_says(tmp_path):
    _bench(tmp_path, tflops=100.0, shapes=_shapes(cifar=1.0, imagenet=50.0))
    measurement = latest_gpu_measurement(tmp_path)
    assert measurement.tflops(CIFAR_SHAPE) == 100.0 and CIFAR_SHAPE not in measurement.shapes


@pytest.mark.parametrize("shapes", [
    [1, 2],                                                   # not an object
    "imagenet",
    {IMAGENET_SHAPE: {"label": "224x224 ResNet-18 step", "error": "out of GPU memory at batch 128"}},
    {IMAGENET_SHAPE: {"model_tflops": 0}},
    {IMAGENET_SHAPE: {"model_tflops": -3}},
    {IMAGENET_SHAPE: {"model_tflops": "fast"}},
    {IMAGENET_SHAPE: {"model_tflops": None}},
    {IMAGENET_SHAPE: {"model_tflops": "1e400"}},              # a string that reads as infinity
    {IMAGENET_SHAPE: {"model_tflops": "nan"}},
    {IMAGENET_SHAPE: [61.2]},
    {IMAGENET_SHAPE: 61.2},
])
def test_a_damaged_or_failed_shape_is_passed_over_and_the_cifar_rate_stands(tmp_path, shapes):
    _bench(tmp_path, tflops=100.0, shapes=shapes)
    measurement = latest_gpu_measurement(tmp_path)
    assert measurement is not None and measurement.model_tflops == 100.0
    assert measurement.tflops(IMAGENET_SHAPE) is None
    _, basis = projected_hours(_config("i100_ont_50_10"), measurement)
    assert "(2026-11-25, 32x32 ResNet-34 step; no ImageNet-shaped measurement)" in basis


def test_the_newest_gpu_file_is_taken_whole_not_shape_by_shape(tmp_path):
    """Rates of one device at one time: an older file's ImageNet rate never joins a newer
    file's CIFAR rate, and a CPU file's shapes never count."""
    _bench(tmp_path, device="older GPU", tflops=10.0, when="2026-11-01 00:00:00 UTC",
           shapes=_shapes(cifar=10.0, imagenet=5.0))
    _bench(tmp_path, device="newer GPU", tflops=20.0, when="2026-11-20 00:00:00 UTC")
    _bench(tmp_path, device="CPU x86_64", tflops=0.1, when="2026-11-24 00:00:00 UTC",
           device_type="cpu", shapes=_shapes(cifar=0.1, imagenet=0.2))
    measurement = latest_gpu_measurement(tmp_path)
    assert measurement.device == "newer GPU" and measurement.tflops(IMAGENET_SHAPE) is None


def test_only_cpu_files_leave_the_files_estimates(tmp_path):
    _bench(tmp_path, device="CPU x86_64", tflops=0.1, device_type="cpu",
           shapes=_shapes(cifar=0.1, imagenet=0.2))
    assert latest_gpu_measurement(tmp_path) is None
    config = _config("i100_ont_50_10")
    assert projected_hours(config, None) == (config.estimate.gpu_hours, config.estimate.basis)


def test_describe_without_a_shape_gives_the_cifar_rate_then_the_others():
    measurement = Measurement("GPU", 100.0, "2026-11-25 10:00:00 UTC", Path(),
                              {IMAGENET_SHAPE: 61.2})
    assert measurement.describe() == ("100 TFLOP/s measured on GPU by `make bench` in the bf16 "
                                      "fast mode (2026-11-25, 32x32 ResNet-34 step; 61.2 "
                                      "TFLOP/s on the 224x224 ResNet-18 step)")
    old = Measurement("GPU", 100.0, "2026-11-25 10:00:00 UTC", Path())
    assert old.describe() == ("100 TFLOP/s measured on GPU by `make bench` in the bf16 fast mode "
                              "(2026-11-25, 32x32 ResNet-34 step)")
    assert hash(measurement)  # still a frozen value, usable as a key


def test_mgrb_list_projects_imagenet_from_its_own_rate(tmp_path, capsys):
    _bench(tmp_path, tflops=200.0, shapes=_shapes(cifar=200.0, imagenet=80.0))
    rows = _listing(tmp_path, capsys)
    imagenet, cifar = _config("i100_ont_50_5"), _config("c100_ont_10_10")
    assert rows["i100_ont_50_5"]["estimated_gpu_hours"] == pytest.approx(
        training_flops(imagenet) / 80e12 / 3600)
    assert "(2026-11-25, 224x224 ResNet-18 step)" in rows["i100_ont_50_5"]["estimate_basis"]
    assert rows["c100_ont_10_10"]["estimated_gpu_hours"] == pytest.approx(
        training_flops(cifar) / 200e12 / 3600)
    assert main(["--experiments-dir", str(EXPERIMENTS), "list", "--runs-dir", str(tmp_path)]) == 0
    assert ("from 200 TFLOP/s measured on synthetic test GPU by `make bench` in the bf16 fast "
            "mode (2026-11-25, 32x32 ResNet-34 step; 80 TFLOP/s on the 224x224 ResNet-18 "
            "step)") in capsys.readouterr().out


def test_the_launcher_table_projects_imagenet_from_its_own_rate(tmp_path):
    _bench(tmp_path, tflops=50.0, shapes=_shapes(cifar=50.0, imagenet=25.0))
    rows = {row.name: row for row in load_experiments(EXPERIMENTS, tmp_path)
            if isinstance(row, ExperimentRow)}
    config = _config("i100_ont_50_10")
    assert rows["i100_ont_50_10"].gpu_hours == pytest.approx(training_flops(config) / 25e12 / 3600)
    assert "224x224 ResNet-18 step" in rows["i100_ont_50_10"].hours_basis


# -- the data benchmark's files ----------------------------------------------------------------
def _data(runs, device="synthetic test GPU", device_type="cuda", when="2026-11-25 10:00:00 UTC",
          **extra):
    return record_data(runs, {"device": device, "device_type": device_type, "measured_at": when,
                              "prepare": {"images_per_s": 250.0, "images_per_core_s": 130.0},
                              "loader": {"rates": {"cpu": {"resident": {"images_per_s": 160.0}}}},
                              **extra})


def test_the_data_benchmark_writes_beside_the_step_files_and_reads_back(tmp_path):
    path = _data(tmp_path, device="NVIDIA H100 80GB HBM3")
    assert path == tmp_path / ".bench" / "data-NVIDIA_H100_80GB_HBM3.json"
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temporary left
    found = latest_data_measurement(tmp_path)
    assert found["device"] == "NVIDIA H100 80GB HBM3" and found["prepare"]["images_per_s"] == 250.0
    _data(tmp_path, device="NVIDIA H100 80GB HBM3", when="2026-11-26 10:00:00 UTC",
          prepare={"images_per_s": 300.0})  # the same device again: the file is replaced
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert latest_data_measurement(tmp_path)["prepare"] == {"images_per_s": 300.0}


def test_the_newest_data_file_wins_by_device_type_and_broken_ones_are_passed_over(tmp_path):
    _data(tmp_path, device="GPU one", when="2026-11-01 00:00:00 UTC")
    _data(tmp_path, device="CPU x86_64", device_type="cpu", when="2026-11-24 00:00:00 UTC")
    folder = tmp_path / ".bench"
    (folder / "data-half.json").write_text('{"device": "x", "device_ty')
    (folder / "data-list.json").write_text("[1, 2]")
    (folder / "data-nodate.json").write_text(json.dumps({"device": "y", "device_type": "cuda"}))
    os.mkfifo(folder / "data-fifo.json")  # never opened for reading: it would block
    assert latest_data_measurement(tmp_path)["device"] == "CPU x86_64"
    assert latest_data_measurement(tmp_path, "cuda")["device"] == "GPU one"
    assert latest_data_measurement(tmp_path / "nowhere") is None


def test_step_and_data_files_never_read_as_each_other(tmp_path):
    # a data file that even carries a GPU rate is not a step measurement, and the reverse
    _data(tmp_path, device="GPU", model_tflops=500.0, when="2027-01-01 00:00:00 UTC")
    assert latest_gpu_measurement(tmp_path) is None
    _bench(tmp_path, device="GPU")
    assert latest_gpu_measurement(tmp_path).model_tflops == 100.0
    assert latest_data_measurement(tmp_path)["measured_at"].startswith("2027")
    (tmp_path / ".bench" / "data-GPU.json").unlink()
    assert latest_data_measurement(tmp_path) is None
