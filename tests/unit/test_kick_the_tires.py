"""`make kick-the-tires` (scripts/kick_the_tires.py): its verdicts, its summary and the reference
times it announces, on hand-made results (the whole command runs in minutes: README's record)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("kick_the_tires", ROOT / "scripts" / "kick_the_tires.py")
kick = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = kick  # its dataclasses look their module up there
spec.loader.exec_module(kick)


def _ablation_runs(out: Path, shift: dict[str, float] | None = None) -> None:
    """results.json of seed 1993 for every setting, at the recorded numbers (+ shift)."""
    record = json.loads(kick.ABLATION_RECORD.read_text())
    for row in record["rows"]:
        index = row["seeds"].index(kick.SEED)
        folder = out / "ablation" / row["experiment"] / f"seed-{kick.SEED}"
        folder.mkdir(parents=True)
        extra = (shift or {}).get(row["experiment"], 0.0)
        folder.joinpath("results.json").write_text(json.dumps(
            {"avg_top1": row["avg_top1"][index] + extra, "last_top1": row["last_top1"][index]}))


def test_the_one_seed_ablation_at_the_recorded_numbers_passes(tmp_path):
    _ablation_runs(tmp_path)
    verdict, detail = kick.ablation_verdict(0, tmp_path)
    assert verdict == kick.PASS
    assert detail.startswith("12 runs equal to the record (to 0.01); re-balancing +")


def test_a_setting_two_points_off_the_record_fails(tmp_path):
    _ablation_runs(tmp_path, {"digits_mgrb": 2.0})
    verdict, detail = kick.ablation_verdict(0, tmp_path)
    assert verdict == kick.FAIL and "within 2.00 points of the record" in detail


def test_no_rebalancing_effect_fails_even_at_the_record(tmp_path):
    """The claim itself: were re-balancing no better than distillation, the step fails."""
    record = json.loads(kick.ABLATION_RECORD.read_text())
    rows = {row["experiment"]: row for row in record["rows"]}
    index = rows["digits_kd"]["seeds"].index(kick.SEED)
    gap = {name: rows[name.replace("rebalance", "kd")]["avg_top1"][index]
           - rows[name]["avg_top1"][index] for name in ("digits_rebalance", "digits_rebalance_keep")}
    _ablation_runs(tmp_path, gap)
    assert kick.ablation_verdict(0, tmp_path)[0] == kick.FAIL


def test_a_failed_or_missing_ablation_run_is_a_failure_not_a_traceback(tmp_path):
    assert kick.ablation_verdict(1, tmp_path) == (kick.FAIL, "mgrb reproduce exited 1")
    with pytest.raises(OSError):  # run_step turns this into FAIL "no result to judge"
        kick.ablation_verdict(0, tmp_path)


@pytest.mark.parametrize("code, tail, expected", [
    (0, "1119 passed, 4 skipped in 150.2s", (kick.PASS, "1119 passed, 4 skipped")),
    (1, "5 failed, 1114 passed in 150.0s", (kick.FAIL, "5 failed, 1114 passed")),
    (2, "", (kick.FAIL, "no summary line")),
])
def test_pytest_steps_are_judged_by_exit_status_and_say_their_counts(code, tail, expected):
    assert kick.pytest_verdict(code, "....\n" + tail) == expected


def test_the_summary_is_one_table_with_a_row_per_claim():
    rows = [{"claim": "A1", "command": "pytest tests/unit tests/simcuda", "verdict": "pass",
             "detail": "10 passed", "seconds": 150.2},
            {"claim": "A5", "command": "make image-test", "verdict": "not run",
             "detail": "needs Docker", "seconds": None}]
    assert kick.summary_table(rows).splitlines() == [
        "| claim | command | verdict | time |", "|---|---|---|---|",
        "| A1 | `pytest tests/unit tests/simcuda` | pass: 10 passed | 2.5 min |",
        "| A5 | `make image-test` | not run: needs Docker | - |"]


def test_every_claim_a_cpu_can_show_is_a_step_and_unavailable_ones_say_what_to_run(tmp_path):
    steps = kick.steps(tmp_path)
    assert [step.claim for step in steps] == ["A1", "A2", "A3", "A4", "A5", "A6", "A7"]
    assert steps[4].missing and steps[4].shown == "make image-test"
    for step in steps:
        assert step.missing or step.argv, step.claim
    ablation = steps[2].argv
    assert ablation[ablation.index("--seeds") + 1] == str(kick.SEED)
    assert set(kick.ABLATION) <= set(ablation)


def test_the_reference_time_names_the_machine_and_its_load(tmp_path, monkeypatch):
    record = tmp_path / "kick.json"
    record.write_text(json.dumps({
        "generated": "2026-12-07 06:40 UTC", "machine": {"cpu": "Xeon", "cores": 2, "load_before": 0.4},
        "steps": [{"claim": "A3", "seconds": 108.0}]}))
    monkeypatch.setattr(kick, "RECORD", record)
    assert kick.reference("A3") == ("; in the recorded run 1.8 min on Xeon, 2 cores, load 0.4 "
                                    "(2026-12-07 06:40 UTC)")
    assert kick.reference("A9") == ""
    monkeypatch.setattr(kick, "RECORD", tmp_path / "none.json")
    assert kick.reference("A3") == ""


@pytest.mark.parametrize("concat, expected", [(75.2, "pass"), (72.0, "FAIL")])
def test_the_peer_step_holds_our_replay_to_avalanches_mixed_alike(tmp_path, concat, expected):
    (tmp_path / "peer").mkdir()
    (tmp_path / "peer" / "peer-replay-cpu.json").write_text(json.dumps({"rows": {
        "ours": {"avg_top1": {"mean": 76.8}}, "avalanche-replay": {"avg_top1": {"mean": 88.2}},
        "avalanche-concat": {"avg_top1": {"mean": concat}}}}))
    verdict, detail = kick.peer_verdict(0, tmp_path)
    assert verdict == expected and f"{abs(76.8 - concat):.1f} points apart" in detail
