"""reproduction.md and results.csv from results that meet their contract: text from run folders
and error messages is escaped, stale figures are never linked, CUDA is named only for runs
on a CUDA device, and configurations of one experiment stay apart."""

import csv
import re

from mgrb.reporting.report import escape, write_report
from mgrb.store import contracts

CPU_VERSIONS = {"python": "3.11.9", "torch": "2.9.0", "cuda": "13.0"}


def _run(name="a", seed=1, avg=60.0, epochs=1, **fields):
    results = {"format": 1, "experiment": name, "avg_top1": avg, "last_top1": avg - 10,
               "phases": [{"phase": 0, "seen_classes": 5, "top1": avg},
                          {"phase": 1, "seen_classes": 6, "top1": avg - 10}],
               "dataset": "digits", "protocol": "5/1", "seed": seed, "wall_time_s": 30.0,
               "device": "CPU (x86_64, 2 threads)", "device_uuid": None, "versions": CPU_VERSIONS,
               "reported": {"avg_top1": 61.0, "last_top1": 50.0, "tolerance": 2.0},
               "config": {"name": name, "train": {"seed": seed, "epochs": epochs},
                          "hierarchy": {"kind": "vis"}},
               **fields}
    return contracts.check("results", results, "results.json")


def _cells(line: str) -> list[str]:
    """A table row's cells, as Markdown splits them: on pipes that are not escaped."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def _section(report: str, title: str) -> list[str]:
    after = report.split(f"## {title}\n", 1)[1]
    return after.split("\n## ", 1)[0].splitlines()


def test_escape_makes_one_literal_line():
    assert escape("a|b `c` *d* _e_ <f> & g\nh\r\ni") == \
        r"a\|b \`c\` \*d\* \_e\_ &lt;f&gt; &amp; g h i"
    assert escape("digits_5_1 x_") == r"digits_5_1 x\_"  # inside a word, never emphasis
    assert escape(r"back\slash [link](x)") == r"back\\slash \[link\](x)"


def test_hostile_names_and_messages_cannot_break_the_table_or_the_list(tmp_path):
    hostile = "cifar|10 `x`\n*y* <b>"
    runs = [_run(dataset=hostile, epochs=1), _run(seed=2, dataset=hostile, epochs="3|4")]
    message = "line one | `code`\nline two *bold* _em_ <tag>"
    report = write_report({"a": runs}, tmp_path, failed={"b_x|y": message},
                          not_run={"c.yaml": "invalid experiment file: c.yaml:3: key\n  ^"}).read_text()
    claims = [line for line in _section(report, "Claims") if line.startswith("|")]
    assert len(claims) == 2 + 4 and all(len(_cells(line)) == 8 for line in claims)
    assert r"a \[train.epochs=3\|4\]" in claims[-1]
    assert r"cifar\|10 \`x\` \*y\* &lt;b&gt;" in claims[-1]
    problems = [line for line in _section(report, "Not reproduced here") if line]
    assert problems == [
        r"- **b_x\|y** failed: line one \| \`code\` line two \*bold\* \_em\_ &lt;tag&gt;",
        "- **c.yaml** not run: invalid experiment file: c.yaml:3: key ^"]
    walls = [line for line in _section(report, "Wall time") if line.startswith("|")]
    assert all(len(_cells(line)) == 3 for line in walls)


def test_a_summary_figure_is_linked_only_when_this_report_wrote_it(tmp_path):
    write_report({"a": [_run()]}, tmp_path)
    assert (tmp_path / "figures" / "summary.png").exists()
    assert "![summary](figures/summary.png)" in (tmp_path / "reproduction.md").read_text()
    report = write_report({}, tmp_path, not_run={"a": "digits data not present"}).read_text()
    assert not (tmp_path / "figures" / "summary.png").exists()
    assert "summary" not in report and "No finished run yet" in report
    assert "- **a** not run: digits data not present" in report
    with open(tmp_path / "results.csv") as handle:
        assert list(csv.DictReader(handle)) == []


def test_cuda_is_named_only_for_runs_on_a_cuda_device(tmp_path):
    report = write_report({"a": [_run()]}, tmp_path).read_text()
    versions = _section(report, "Versions")
    assert "- cuda: not used (the runs trained on the CPU)" in versions
    assert "13.0" not in report and "- torch: 2.9.0" in versions
    gpu = _run(seed=2, device="NVIDIA H100 80GB HBM3", device_uuid="GPU-5a1b",
               versions={**CPU_VERSIONS, "cuda": "12.8"})
    versions = _section(write_report({"a": [_run(), gpu]}, tmp_path).read_text(), "Versions")
    assert "- cuda: 12.8 (the runs on a GPU; 1 trained on the CPU)" in versions


def test_configurations_get_rows_figures_and_csv_lines_of_their_own(tmp_path):
    runs = [_run(seed=1, avg=40.0), _run(seed=2, avg=42.0), _run(seed=1, avg=70.0, epochs=3),
            _run(seed=1, avg=70.0, epochs=3)]  # the last: the same seed found twice
    report = write_report({"a": runs}, tmp_path).read_text()
    assert "### a \\[train.epochs=1\\]" in report and "### a \\[train.epochs=3\\]" in report
    figures = re.findall(r"\]\((figures/a-[0-9a-f]{8}\.png)\)", report)
    assert len(set(figures)) == 2 and all((tmp_path / f).exists() for f in figures)
    with open(tmp_path / "results.csv") as handle:
        rows = {(r["variant"], r["metric"]): r for r in csv.DictReader(handle)}
    assert rows["train.epochs=1", "avg_top1"]["runs"] == "2"
    assert rows["train.epochs=1", "avg_top1"]["reproduced_mean"] == "41.0"
    assert rows["train.epochs=3", "avg_top1"]["runs"] == "1"
    assert rows["train.epochs=3", "avg_top1"]["repeated_seeds"] == "1 x2"
    assert "(n=1; seed 1 in 2 folders, counted once)" in report


def test_a_link_planted_as_the_figures_folder_is_refused_and_nothing_written_through_it(tmp_path):
    import pytest

    from mgrb.errors import MGRBError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "figures").symlink_to(elsewhere)
    with pytest.raises(MGRBError, match="figures: is a symbolic link or not a folder"):
        write_report({"a": [_run()]}, reports)
    assert list(elsewhere.iterdir()) == [] and not (reports / "reproduction.md").exists()
