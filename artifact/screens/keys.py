"""Keys that every full screen lists first in its footer. The footer cuts off what does not fit
on the right: on an 80-column terminal, quitting and help must still be in sight."""

from textual.binding import Binding

FIRST_KEYS = [Binding("ctrl+q", "app.quit", "Quit"), Binding("f1", "app.help", "Help")]
