"""The stage-1 loss against epochs counted over all phases: each logged value (the running
mean of the epoch so far), each epoch's mean, and where each later phase's training began."""

from __future__ import annotations

from textual.content import Content

from .chart import LINE, POINT, Chart, legend, tick_labels, ticks

LOGGED, EPOCH, PHASE = (90, 140, 230), (230, 90, 60), (128, 128, 128)


class LossPlot(Chart):
    def show(self, losses, epoch_losses, phase_starts: dict[int, float]) -> None:
        starts = tuple(sorted(at for phase, at in phase_starts.items() if phase))
        super().show(tuple(losses), tuple(epoch_losses), starts)

    def draw(self, plt, width: int, height: int) -> Content:
        losses, epoch_losses, starts = self.shown
        self.border_subtitle = ""
        if not losses:
            return legend(("·", None, "no stage-1 loss logged yet"))
        for at in starts:
            plt.vline(at, color=PHASE)
        plt.plot(*zip(*losses), marker=LINE, color=LOGGED)
        if epoch_losses:
            plt.scatter(*zip(*epoch_losses), marker=POINT, color=EPOCH)
        epochs = [at for at, _ in losses]
        values = [loss for _, loss in losses]
        x_ticks = ticks(0, max(epochs), max(width // 7, 2), whole=True)
        y_ticks = ticks(min(values), max(values), max(height // 2, 2))
        plt.xticks(x_ticks, tick_labels(x_ticks))
        plt.yticks(y_ticks, tick_labels(y_ticks))
        self.border_subtitle = f"last {values[-1]:.3g}  min {min(values):.3g}  max {max(values):.3g}"
        entries = [("⠒", LOGGED, "logged"), (POINT, EPOCH, "epoch mean")]
        return legend(*entries, *([("│", PHASE, "new phase")] if starts else []))
