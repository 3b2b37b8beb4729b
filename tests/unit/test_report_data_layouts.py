"""`mgrb data` shows each data set's expected layout once: the CIFAR layout covers CIFAR-10
and CIFAR-100, whose loaders both quote it."""

from mgrb.cli import main
from mgrb.data.cifar import CIFAR_LAYOUT
from mgrb.data.folder import IMAGENET100_LAYOUT, MINIIMAGENET_LAYOUT

LAYOUTS = (CIFAR_LAYOUT, MINIIMAGENET_LAYOUT, IMAGENET100_LAYOUT)


def test_incomplete_cifar_copies_print_the_layout_once(tmp_path, capsys):
    # test files present (so nothing is downloaded), training files missing: both loaders fail
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"")
    assert main(["data", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert [out.count(layout) for layout in LAYOUTS] == [1, 1, 1]
    lines = out.splitlines()
    assert any(line.startswith("cifar10: damaged: ") and "data_batch_1: missing" in line
               for line in lines)
    assert any(line.startswith("cifar100: damaged: ") and "train: missing" in line for line in lines)


def test_missing_cifar_without_download_prints_the_layout_once(tmp_path, capsys):
    assert main(["data", "--root", str(tmp_path), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert [out.count(layout) for layout in LAYOUTS] == [1, 1, 1]
    assert "cifar10: missing" in out and "cifar100: missing" in out
