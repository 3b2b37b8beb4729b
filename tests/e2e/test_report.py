"""`mgrb reproduce` on tiny digits experiments: runs, skips finished ones, writes the report."""

import csv
import json

import pytest
from PIL import Image

from mgrb.cli import main

TINY = """\
name: {name}
dataset: {{name: digits}}
protocol: {{initial: 8, increment: 1, memory_total: 200}}
train: {{epochs: 1, milestones: [], stage2_epochs: 1, batch_size: 64}}
hierarchy: {{kind: vis, clusters: 2}}
"""


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    experiments = root / "experiments"
    experiments.mkdir()
    (experiments / "tiny_ref.yaml").write_text(
        TINY.format(name="tiny_ref") + "seeds: [1, 2]\n"
        "reported: {avg_top1: 50.0, last_top1: 99.0, tolerance: 3.0}\n")
    (experiments / "tiny_noref.yaml").write_text(TINY.format(name="tiny_noref"))
    (experiments / "c10_missing.yaml").write_text(
        # download left on: named or not, `mgrb reproduce` never fetches data (issue 30)
        f"name: c10_missing\ndataset: {{name: cifar10, root: {root / 'nodata'}}}"
        "\nprotocol: {initial: 5, increment: 1}\nhierarchy: {kind: vis}\n")
    args = ["--experiments-dir", str(experiments), "reproduce", "--runs-dir", str(root / "runs"),
            "--reports-dir", str(root / "reports"), "--device", "cpu"]
    import contextlib
    import io

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        assert main(args) == 0  # default selection: every experiment whose data is present
    # long batches say how far along they are: run k of the N this call starts
    told = [line for line in said.getvalue().splitlines() if line.startswith("== run ")]
    assert [line.split(":")[0] for line in told] == [
        "== run 1 of 3", "== run 2 of 3", "== run 3 of 3"], said.getvalue()
    return root, args


def test_runs_land_in_their_folders(reproduced):
    root, _ = reproduced
    assert (root / "runs" / "tiny_ref" / "seed-1" / "results.json").exists()
    assert (root / "runs" / "tiny_ref" / "seed-2" / "results.json").exists()
    assert (root / "runs" / "tiny_noref" / "results.json").exists()
    assert not (root / "runs" / "c10_missing").exists()
    seeds = {json.loads((root / "runs" / "tiny_ref" / f"seed-{s}" / "results.json").read_text())
             ["seed"] for s in (1, 2)}
    assert seeds == {1, 2}


def test_report_has_claims_with_verdicts(reproduced):
    root, _ = reproduced
    report = (root / "reports" / "reproduction.md").read_text()
    assert "| experiment | data set | protocol | hierarchy | metric | reported | reproduced |" in report
    assert "| tiny_ref | digits | 8/1 | vis | last_top1 | 99.00 ± 3 |" in report
    assert "(n=2)" in report  # mean and std over the two seeds
    assert "no reference" in report
    assert "**c10_missing** not run: cifar10 data not present" in report
    assert "## Hardware" in report and "## Versions" in report and "## Commit" in report


def test_results_csv(reproduced):
    root, _ = reproduced
    with open(root / "reports" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["experiment"], r["metric"]) for r in rows] == [
        ("tiny_noref", "avg_top1"), ("tiny_noref", "last_top1"),
        ("tiny_ref", "avg_top1"), ("tiny_ref", "last_top1")]
    ref = {r["metric"]: r for r in rows if r["experiment"] == "tiny_ref"}
    assert ref["last_top1"]["runs"] == "2" and ref["last_top1"]["reproduced_std"] != ""
    assert ref["last_top1"]["verdict"] in ("below", "reproduced", "above")
    assert float(ref["avg_top1"]["reported"]) == 50.0


def test_figures_are_valid_pngs(reproduced):
    root, _ = reproduced
    for name in ("tiny_ref", "tiny_noref", "summary"):
        path = root / "reports" / "figures" / f"{name}.png"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 200


def test_a_second_reproduce_skips_finished_runs(reproduced, capsys):
    root, args = reproduced
    before = (root / "runs" / "tiny_noref" / "results.json").stat().st_mtime_ns
    assert main(args + ["tiny_noref"]) == 0
    assert "finished earlier, skipped" in capsys.readouterr().err
    assert (root / "runs" / "tiny_noref" / "results.json").stat().st_mtime_ns == before


def test_an_unknown_experiment_pattern_is_an_error(reproduced, capsys):
    _, args = reproduced
    assert main(args + ["nothing_like_this*"]) == 2
    assert "matches no experiment" in capsys.readouterr().err


def test_an_unrun_experiment_keeps_the_earlier_results_in_the_report(reproduced, capsys):
    root, args = reproduced
    summary = root / "reports" / "figures" / "summary.png"
    # nothing chosen can run (its data is missing): nothing reproduced, exit 3, as without
    # names; no download is tried and no run folder is left behind
    assert main(args + ["c10_missing"]) == 3
    assert not (root / "runs" / "c10_missing").exists()
    assert not (root / "nodata").exists()  # never made, never filled
    report = (root / "reports" / "reproduction.md").read_text()
    assert "| tiny_ref | digits | 8/1 | vis | last_top1 |" in report
    assert "| tiny_noref | digits | 8/1 | vis | avg_top1 |" in report
    assert "**c10_missing** not run: cifar10 data not present" in report
    assert "![summary](figures/summary.png)" in report and summary.exists()
    with open(root / "reports" / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert "tiny_ref" in capsys.readouterr().out  # the verdict table still shows it


def test_report_on_the_runs_folder_finds_every_seed(reproduced, capsys):
    root, _ = reproduced
    out = root / "report-of-runs"
    assert main(["report", str(root / "runs"), "--out", str(out)]) == 0
    report = (out / "reproduction.md").read_text()
    assert "| tiny_ref | digits | 8/1 | vis | avg_top1 |" in report and "(n=2)" in report
    assert "| tiny_noref | digits |" in report
    # a CPU run: torch's CUDA build version is not presented as what the run used
    assert "- cuda: not used (the runs trained on the CPU)" in report
    capsys.readouterr()
    assert main(["report", str(root / "nothing-here"), "--out", str(out)]) == 2
    assert "no such folder; not a run folder" in capsys.readouterr().err
    assert (out / "reproduction.md").read_text() == report  # left as it was


def test_seeds_runs_only_the_seeds_named(reproduced, tmp_path, capsys):
    """--seeds 2: a one-seed pass of an experiment that lists several; a seed it does not list
    leaves it not run, said as such."""
    root, _ = reproduced
    args = ["--experiments-dir", str(root / "experiments"), "reproduce", "--runs-dir",
            str(tmp_path / "runs"), "--reports-dir", str(tmp_path / "reports"), "--device", "cpu"]
    assert main(args + ["tiny_ref", "--seeds", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny_ref").iterdir()) == ["seed-2"]
    assert "== run 1 of 1: tiny_ref (seed 2)" in capsys.readouterr().err
    assert main(args + ["tiny_ref", "--seeds", "7"]) == 0  # seed 2 finished earlier: judged
    assert "skipping tiny_ref: lists seeds [1, 2], none of --seeds 7" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(args + ["tiny_ref", "--seeds", "x"])
    assert stopped.value.code == 2
    assert "'x' is not a list of seeds" in capsys.readouterr().err
