"""Measured throughput: `make bench`'s files in <runs>/.bench/ and the projected hours that
`mgrb list` and the launcher derive from them. The measurements here are synthetic inputs
written in the bench's format, with a device name that says so."""

import json
from pathlib import Path

import pytest

from artifact.core.experiments import Experiment, load_experiments
from mgrb.cli import main
from mgrb.config.experiment import load_config
from mgrb.perf.estimate import projected_hours, training_flops
from mgrb.perf.throughput import latest_gpu_measurement, record

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _bench(runs, device="synthetic test GPU", tflops=100.0, when="2026-11-25 10:00:00 UTC",
           device_type="cuda"):
    return record(runs, {"device": device, "device_type": device_type, "model_tflops": tflops,
                         "measured_at": when})


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
            if isinstance(row, Experiment)}
    config = load_config(EXPERIMENTS / "mini_ont_10_10.yaml")
    assert rows["mini_ont_10_10"].gpu_hours == pytest.approx(
        training_flops(config) / 50e12 / 3600)
    assert "measured on synthetic test GPU" in rows["mini_ont_10_10"].hours_basis
