"""Per GPU: utilisation, memory, temperature, power and the runs on it; or why there is none."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from artifact.core.gpu import GpuSnapshot

from .styles import number, plain_text

GIB = 1024 ** 3


class GpuPanel(Static):
    def show(self, snapshot: GpuSnapshot, users: dict[str, list[int]]) -> None:
        if not snapshot.gpus:
            self.update(plain_text(snapshot.message or "No GPU visible.", "dark_orange"))
            return
        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        for column in ("GPU", "util", "memory", "temp", "power", "runs"):
            table.add_column(column, no_wrap=column != "runs")
        for gpu in snapshot.gpus:
            runs = ", ".join(name for name, indices in users.items() if gpu.index in indices)
            power = number(gpu.power, ".0f", " W")
            if gpu.power is not None and gpu.power_limit:
                power += f"/{gpu.power_limit:.0f}"
            label = f"{gpu.index} {gpu.name}"
            if gpu.mig_enabled:  # the launcher leaves it alone; the reason went out as a message
                label += f" (MIG, {len(gpu.mig_devices)} slices: not used)"
            # a str cell of a Rich table is read as markup: names go in as plain text
            table.add_row(plain_text(label), number(gpu.utilisation, ".0f", "%"),
                          f"{gpu.memory_used / GIB:.1f}/{gpu.memory_total / GIB:.0f} GiB",
                          number(gpu.temperature, ".0f", "°C"), power, plain_text(runs or "-"))
        self.update(table)
