"""`make setup` shows progress through its long pip install (scripts/install_progress.py)."""

import importlib.util
import io
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "install_progress.py"
spec = importlib.util.spec_from_file_location("install_progress", SCRIPT)
install_progress = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_progress)

PIP_OUTPUT = """\
Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple
WARNING: Location 'file:///opt/pypi-more/simple/x/' is ignored: it is neither a file nor a directory.
Collecting torch==2.14.1 (from -r requirements.lock (line 300))
  Downloading torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl (900 MB)
Processing /opt/pypi/files/numpy-2.3.4-cp311-cp311-manylinux_2_28_x86_64.whl (from -r requirements.lock)
Installing collected packages: numpy, torch
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.
Successfully installed numpy-2.3.4 torch-2.14.1
"""


def test_packages_are_numbered_noise_dropped_and_errors_passed_through():
    out = io.StringIO()
    count = install_progress.follow(io.StringIO(PIP_OUTPUT), 2, out)
    lines = out.getvalue().splitlines()
    assert count == 2
    assert lines[0] == "  [1/2] torch==2.14.1" and lines[1] == "  [2/2] numpy==2.3.4"
    assert "unpacking 2 packages" in lines[2]
    assert lines[3].startswith("ERROR: THESE PACKAGES DO NOT MATCH")
    assert lines[4] == "  installed 2 packages"
    assert not any("Downloading" in line or "WARNING: Location" in line for line in lines)


def test_the_size_of_the_growing_environment_is_reported_while_pip_is_silent(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "big.so").write_bytes(b"\0" * (3 * 2**20))
    stop = threading.Event()

    class Screen(io.StringIO):
        def write(self, text):
            stop.set()  # one report is enough
            return super().write(text)

    screen = Screen()
    install_progress.tick(tmp_path, 0.01, stop, screen)
    assert f"3 MB in {tmp_path} after" in screen.getvalue()


def test_the_command_line_follows_stdin_to_its_end():
    result = subprocess.run([sys.executable, str(SCRIPT), "--total", "2", "--watch", str(ROOT)],
                            input=PIP_OUTPUT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "[2/2] numpy==2.3.4" in result.stdout
