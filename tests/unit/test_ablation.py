"""The digits ablation's summary (mgrb.reporting.ablation) on run folders written through the
real writers: mean and spread over seeds, refusal to average different configurations."""

import dataclasses
import json
from pathlib import Path

import pytest

from mgrb.config import load_config
from mgrb.errors import MGRBError
from mgrb.reporting import ablation
from mgrb.store.runfolder import RunFolder

EXPERIMENTS = Path(__file__).parents[2] / "experiments"
BASE = load_config(EXPERIMENTS / "demo" / "digits_mgrb_keep.yaml")


def _run(folder, config, avg, last):
    run = RunFolder(folder)
    plain = config.to_dict()
    run.prepare(plain)
    run.write_results({"experiment": config.name, "avg_top1": avg, "last_top1": last,
                       "phases": [{"phase": 0, "seen_classes": 5, "top1": last}],
                       "seed": config.train.seed, "config": plain, "device": "CPU (test)",
                       "wall_time_s": 1.5, "git_commit": "abc"})


def test_mean_and_std_over_seeds_and_what_the_setting_trains_with(tmp_path):
    for seed, avg, last in ((1993, 80.0, 70.0), (1994, 90.0, 74.0), (1995, 85.0, 72.0)):
        _run(tmp_path / BASE.name / f"seed-{seed}", BASE.with_seed(seed), avg, last)
    row = ablation.read_setting(tmp_path, BASE.name)
    assert row["seeds"] == [1993, 1994, 1995]
    assert (row["avg_mean"], row["avg_std"]) == (85.0, 5.0)
    assert (row["last_mean"], row["last_std"]) == (72.0, 2.0)
    assert row["distill"] and row["regularizer"] and row["rebalance"] and row["stage2"]
    assert row["fresh_classifier"] is False and row["hierarchy"] == "vis"
    table = ablation.markdown_table([row])
    assert "| `digits_mgrb_keep` | yes | yes | yes | yes | kept | 85.00 ± 5.00 | 72.00 ± 2.00 | 3 |" in table


def test_runs_that_differ_in_more_than_the_seed_are_refused(tmp_path):
    _run(tmp_path / BASE.name / "seed-1993", BASE, 80.0, 70.0)
    other = BASE.with_seed(1994)
    other = dataclasses.replace(other, train=dataclasses.replace(other.train, epochs=3))
    _run(tmp_path / BASE.name / "seed-1994", other, 90.0, 74.0)
    with pytest.raises(MGRBError, match="differ in more than the seed"):
        ablation.read_setting(tmp_path, BASE.name)


def test_an_unfinished_setting_is_named_and_the_command_exits_2(tmp_path, capsys):
    RunFolder(tmp_path / BASE.name / "seed-1993").prepare(BASE.to_dict())
    code = ablation.main(["--runs-dir", str(tmp_path), "--out", str(tmp_path / "out"), BASE.name])
    assert code == 2 and "seed-1993: not finished" in capsys.readouterr().err
    assert not (tmp_path / "out" / "ablation.md").exists()


def test_the_record_holds_every_run_and_the_command(tmp_path):
    for seed in (1993, 1994):
        _run(tmp_path / BASE.name / f"seed-{seed}", BASE.with_seed(seed), 80.0 + seed % 2, 70.0)
    record = tmp_path / "record.json"
    assert ablation.main(["--runs-dir", str(tmp_path), "--out", str(tmp_path / "out"),
                          "--record", str(record), BASE.name]) == 0
    data = json.loads(record.read_text())
    assert data["command"] == "make demo-ablation" and data["rows"][0]["avg_top1"] == [81.0, 80.0]
    assert (tmp_path / "out" / "ablation.png").stat().st_size > 0
