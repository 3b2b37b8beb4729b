"""`mgrb check` on hand-made results.json files: all four verdicts and the exit statuses."""

import json

import pytest

from mgrb.reporting.check import verdict
from mgrb.cli import main


def _results(folder, name, avg, last, reported, tolerance=2.0):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "experiment": name, "avg_top1": avg, "last_top1": last,
        "phases": [{"phase": 0, "seen_classes": 5, "top1": last}],
        "reported": None if reported is None else {
            "avg_top1": reported[0], "last_top1": reported[1], "tolerance": tolerance}}))
    return str(folder)


@pytest.mark.parametrize("value,expected", [
    (61.02, "reproduced"), (63.02, "reproduced"), (59.02, "reproduced"),
    (63.03, "above"), (59.01, "below")])
def test_verdict_edges(value, expected):
    assert verdict(value, 61.02, 2.0) == expected


def test_no_reference():
    assert verdict(50.0, None, 2.0) == "no reference"


def test_all_four_verdicts_and_exit_1_when_something_is_below(tmp_path, capsys):
    runs = [_results(tmp_path / "a", "a", 61.5, 40.0, (61.02, 45.81)),
            _results(tmp_path / "b", "b", 70.0, 50.0, None)]
    code = main(["check", *runs])
    out = capsys.readouterr().out
    assert code == 1
    assert "reproduced" in out and "below" in out and "no reference" in out
    code = main(["check", "--json", _results(tmp_path / "c", "c", 66.0, 58.0, (61.02, 45.81))])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [row["verdict"] for row in rows] == ["above", "above"]


def test_tolerance_from_file_and_from_command_line(tmp_path, capsys):
    run = _results(tmp_path / "a", "a", 64.0, 45.81, (61.02, 45.81), tolerance=3.0)
    main(["check", "--json", run])
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "reproduced"
    main(["check", "--json", "--tolerance", "1", run])
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "above"


def test_several_seeds_are_judged_by_their_mean(tmp_path, capsys):
    runs = [_results(tmp_path / f"s{i}", "a", avg, 45.81, (61.02, 45.81))
            for i, avg in enumerate([58.0, 62.0, 60.0])]
    assert main(["check", "--json", *runs]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["reproduced"] == 60.0 and row["std"] == 2.0 and row["runs"] == 3
    assert row["verdict"] == "reproduced"


def test_missing_or_broken_results_exit_2(tmp_path, capsys):
    (tmp_path / "unfinished").mkdir()
    assert main(["check", str(tmp_path / "unfinished")]) == 2
    assert "results.json: missing; the run has not finished" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    assert main(["check", str(broken)]) == 2
    assert "results.json: not valid JSON" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nowhere")]) == 2
