"""What the terminal shows while training: epoch numbers that go on after a resume."""

import io
import time

from mgrb.training.progress import Progress, stage_label


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_epochs_after_a_resume_keep_their_numbers_and_the_eta_counts_from_the_resume():
    screen = Terminal()
    progress = Progress(screen)
    started = time.monotonic() - 10  # two epochs (5 and 6) took 10 s since the resume
    progress.epoch(stage_label(0, 6, "stage 1"), epoch=6, epochs=12, first=5, loss=0.5,
                   images_per_s=100.0, started=started)
    line = screen.getvalue()
    assert "epoch 6/12" in line
    assert "ETA 0:30" in line or "ETA 0:29" in line  # 6 epochs left at 5 s each


def test_plain_output_names_the_absolute_epoch_too():
    out = io.StringIO()
    Progress(out).epoch(stage_label(1, 6, "stage 1"), epoch=12, epochs=12, first=9,
                        loss=0.1, images_per_s=50.0, started=time.monotonic())
    assert "phase 2/6 stage 1 epoch 12/12" in out.getvalue()


def test_a_count_is_redrawn_in_place_a_few_times_a_second_and_its_rate_leaves_out_kept_items():
    screen = Terminal()
    progress = Progress(screen)
    started = time.monotonic() - 10  # 1,000 images done in 10 s after 1,000 kept from before
    progress.count("imagenet100:", 2000, 4000, started=started, first=1000)
    progress.count("imagenet100:", 2100, 4000, started=started, first=1000)  # too soon: not drawn
    assert screen.getvalue().count("\r") == 1
    assert screen.getvalue().startswith("\rimagenet100: 2,000/4,000 images 100 images/s ETA 0:")
    progress.count("imagenet100:", 4000, 4000, started=started, first=1000)  # the last: always
    assert screen.getvalue().count("\r") == 2 and screen.getvalue().endswith("ETA 0:00\n")
