"""README's launcher pictures (docs/launcher.svg, docs/launcher-monitor.svg), taken from the
real app on a runs folder where `make demo` has finished:

    make demo && .venv/bin/python scripts/launcher_screenshots.py --runs-dir runs

The picker is filtered to the digits experiment, then its monitor is opened; each picture is
saved once the screen shows the run's data (waited for, never a fixed time).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = (132, 40)


async def _until(pilot, condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"launcher_screenshots: the launcher did not show {what}")
        await pilot.pause(0.1)


async def take(runs_dir: Path, out: Path) -> None:
    from artifact.app import ArtifactApp
    from artifact.core.runs import FINISHED
    from artifact.core.service import Service
    from artifact.screens.monitor import MonitorScreen
    from artifact.widgets.accuracy_plot import AccuracyPlot

    service = Service(experiments_dir=ROOT / "experiments", runs_dir=runs_dir)
    app = ArtifactApp(service, poll_interval=0.2, reports_dir=runs_dir.parent / "reports")
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: app.snapshot is not None, "its first snapshot")
        state = app.snapshot.states.get("digits_5_1")
        if state is None or state.status != FINISHED:
            raise SystemExit(f"launcher_screenshots: {runs_dir}/digits_5_1 has not finished; "
                             "run `make demo` first")
        await pilot.press(*"digits")
        await pilot.pause(0.5)
        app.save_screenshot(filename="launcher.svg", path=str(out))
        await pilot.press("down", "enter")
        await _until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
        await _until(pilot, lambda: bool(app.screen.query_one(AccuracyPlot).shown[0]),
                     "the run's curves")
        await pilot.pause(0.5)
        app.save_screenshot(filename="launcher-monitor.svg", path=str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    asyncio.run(take(args.runs_dir.resolve(), args.out))
    print(f"written: {args.out / 'launcher.svg'}, {args.out / 'launcher-monitor.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
