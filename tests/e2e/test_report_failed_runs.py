"""A run that fails before or during training says so in its folder (failed.json), and
`mgrb check` / `mgrb report` list it as failed instead of stopping at it."""

from mgrb.cli import main
from mgrb.store import contracts


def test_a_run_without_its_data_leaves_a_failure_record_that_check_and_report_show(tmp_path,
                                                                                  capsys):
    (tmp_path / "nodata").mkdir()  # the data folder is there, CIFAR-10 is not
    experiment = tmp_path / "c10.yaml"
    experiment.write_text(f"name: c10\ndataset: {{name: cifar10, root: {tmp_path / 'nodata'}, "
                          "download: false}\nprotocol: {initial: 5, increment: 1}\n"
                          "hierarchy: {kind: vis}\n")
    out = tmp_path / "runs" / "c10"
    assert main(["run", str(experiment), "--out", str(out), "--device", "cpu"]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err
    record = contracts.read("failed", out / "failed.json")
    assert record["message"].startswith("CIFAR-10 not found in") and record["kind"] == "DataError"

    assert main(["check", str(tmp_path / "runs")]) == 3  # nothing finished: no verdict
    captured = capsys.readouterr()
    assert f"{out}" in captured.out and "failed: CIFAR-10 not found in" in captured.out
    assert "resume" not in captured.err and "Traceback" not in captured.err

    reports = tmp_path / "reports"
    assert main(["report", str(out), "--out", str(reports)]) == 3
    assert "none of the folders given holds a finished run (1 failed, 0 not finished)" in \
        capsys.readouterr().err
    assert not reports.exists()
