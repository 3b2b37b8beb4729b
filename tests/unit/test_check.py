"""`mgrb check` on run folders written through the real writers (RunFolder.prepare,
write_results, record_failure): all four verdicts, grouping by configuration and seed,
unfinished, failed and non-run folders, and the exit statuses."""

import json

import pytest

from mgrb.cli import main
from mgrb.reporting.check import verdict
from mgrb.store.runfolder import RunFolder


def _config(name, seed=1, epochs=1, **train):
    return {"name": name, "description": f"seed {seed}",
            "train": {"seed": seed, "epochs": epochs, "log_every": 10, **train}}


def _results(folder, name, avg, last, reported, tolerance=2.0, seed=None, config=None):
    """A finished run folder; without seed or config, as a results.json of format 1 may be."""
    run = RunFolder(folder)
    run.prepare(config or _config(name))
    results = {"experiment": name, "avg_top1": avg, "last_top1": last,
               "phases": [{"phase": 0, "seen_classes": 5, "top1": last}],
               "reported": None if reported is None else {
                   "avg_top1": reported[0], "last_top1": reported[1], "tolerance": tolerance}}
    if seed is not None:
        results["seed"] = seed
    if config is not None:
        results["config"] = config
    run.write_results(results)
    return str(folder)


def _unfinished(folder, name, failure=None):
    run = RunFolder(folder)
    run.prepare(_config(name))
    if failure:
        run.record_failure(failure, "DataError")
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
    runs = [_results(tmp_path / f"s{i}", "a", avg, 45.81, (61.02, 45.81), seed=i,
                     config=_config("a", seed=i))
            for i, avg in enumerate([58.0, 62.0, 60.0])]
    assert main(["check", "--json", *runs]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["reproduced"] == 60.0 and row["std"] == 2.0 and row["runs"] == 3
    assert row["verdict"] == "reproduced" and row["label"] == "a"


def test_a_folder_of_seeds_stands_for_every_run_below_it(tmp_path, capsys):
    for seed, avg in ((1, 58.0), (2, 62.0)):
        _results(tmp_path / "runs" / "a" / f"seed-{seed}", "a", avg, 45.81, (61.02, 45.81),
                 seed=seed, config=_config("a", seed=seed))
    _results(tmp_path / "runs" / "b", "b", 50.0, 40.0, None, seed=1, config=_config("b"))
    for given in ([tmp_path / "runs" / "a"], [tmp_path / "runs"]):
        assert main(["check", "--json", *map(str, given)]) == 0
        rows = json.loads(capsys.readouterr().out)
        counts = {row["experiment"]: row["runs"] for row in rows}
        assert counts == ({"a": 2} if len(rows) == 2 else {"a": 2, "b": 1})


def test_configurations_are_never_averaged_together(tmp_path, capsys):
    short = [_results(tmp_path / f"e1-{s}", "a", 40.0 + s, 30.0, (61.02, 45.81), seed=s,
                      config=_config("a", seed=s, epochs=1)) for s in (1, 2)]
    # train.log_every and the description may change on resume: the same configuration
    long = _results(tmp_path / "e3", "a", 60.0, 45.0, (61.02, 45.81), seed=1,
                    config={**_config("a", epochs=3, log_every=99), "description": "other"})
    assert main(["check", "--json", *short, long]) == 1
    rows = {(row["label"], row["metric"]): row for row in json.loads(capsys.readouterr().out)}
    assert sorted({label for label, _ in rows}) == ["a [train.epochs=1]", "a [train.epochs=3]"]
    assert rows["a [train.epochs=1]", "avg_top1"]["runs"] == 2
    assert rows["a [train.epochs=1]", "avg_top1"]["reproduced"] == 41.5
    assert rows["a [train.epochs=3]", "avg_top1"]["runs"] == 1
    assert rows["a [train.epochs=3]", "avg_top1"]["reproduced"] == 60.0
    main(["check", *short, long])
    assert "a [train.epochs=3]" in capsys.readouterr().out


def test_a_repeated_seed_counts_once_and_is_flagged(tmp_path, capsys):
    runs = [_results(tmp_path / name, "a", avg, 45.81, (61.02, 45.81), seed=seed,
                     config=_config("a", seed=seed))
            for name, seed, avg in (("one", 1, 60.0), ("copy", 1, 60.0), ("two", 2, 62.0))]
    assert main(["check", "--json", *runs]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["runs"] == 2 and row["repeated_seeds"] == {"1": 2}
    main(["check", *runs])
    assert "(n=2; seed 1 in 2 folders, counted once)" in capsys.readouterr().out


def test_unfinished_and_failed_runs_are_rows_not_an_abort(tmp_path, capsys):
    finished = _results(tmp_path / "runs" / "a", "a", 61.0, 45.81, (61.02, 45.81))
    running = _unfinished(tmp_path / "runs" / "b", "b")
    failed = _unfinished(tmp_path / "runs" / "c", "c", failure="CIFAR-10 not found in data.\n"
                                                              "Expected layout: \x1b[2J...")
    assert main(["check", finished, running, failed]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(line.startswith("a ") and line.endswith("reproduced") for line in lines)
    assert any(line.startswith(running) and "not finished: running, or stopped" in line
               for line in lines)
    assert any(line.startswith(failed) and "failed: CIFAR-10 not found in data. Expected" in line
               for line in lines)
    assert "resume" not in captured.err
    assert "\x1b" not in captured.out  # a message from elsewhere cannot drive the terminal
    main(["check", "--json", str(tmp_path / "runs")])
    rows = json.loads(capsys.readouterr().out)
    assert [(row["verdict"], row.get("folder")) for row in rows[2:]] == [
        ("not finished", running), ("failed", failed)]


def test_nothing_finished_exits_3(tmp_path, capsys):
    runs = [_unfinished(tmp_path / "b", "b"), _unfinished(tmp_path / "c", "c", failure="boom")]
    assert main(["check", *runs]) == 3
    captured = capsys.readouterr()
    assert "no verdict: none of the runs given has finished" in captured.err
    assert "failed: boom" in captured.out


def test_what_is_not_a_run_folder_is_named_so_and_exits_2(tmp_path, capsys):
    finished = _results(tmp_path / "a", "a", 61.0, 45.81, (61.02, 45.81))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    code = main(["check", finished, str(tmp_path / "empty"), str(tmp_path / "notes.txt"),
                 str(tmp_path / "nowhere")])
    captured = capsys.readouterr()
    assert code == 2
    assert "reproduced" in captured.out  # the rest is still judged
    assert f"{tmp_path / 'empty'}: not a run folder (no config.yaml or results.json" in captured.err
    assert f"{tmp_path / 'notes.txt'}: exists but is not a folder; not a run folder" in captured.err
    assert f"{tmp_path / 'nowhere'}: no such folder; not a run folder" in captured.err
    assert "resume" not in captured.err and "Traceback" not in captured.err


def test_broken_results_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    assert main(["check", str(broken)]) == 2
    assert "results.json: not valid JSON" in capsys.readouterr().err


def test_a_mistyped_run_folder_says_the_closest_one(tmp_path, capsys):
    from mgrb.cli import main

    (tmp_path / "runs" / "digits_5_1").mkdir(parents=True)
    assert main(["check", str(tmp_path / "runs" / "digits_5_2")]) != 0
    assert f"no such folder (did you mean {tmp_path / 'runs'}/digits_5_1?)" in capsys.readouterr().err
