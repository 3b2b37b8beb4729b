"""Text from files shown to a person: one home for writing out control characters.

A name or message read from a run folder, an experiment file or an image tree may hold
escape sequences (which move the cursor or recolour a terminal), newlines (which forge a
line of output) or bidirectional overrides (which make text read other than it is)."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value) -> str:
    """`value` as a string in which every control character is written out: ESC as \\x1b,
    a newline as \\n (a name or a cell is one line)."""
    return _UNSHOWABLE.sub(_written_out, str(value))


def one_line(value) -> str:
    """`value` on one line, for a table row or a cell: runs of white space (line breaks
    included) become one space, and every other control character is written out."""
    return printable(" ".join(str(value).split()))


def terminal_safe(message: str) -> str:
    """A message for the terminal: its own line breaks kept, every other control character
    written out (names from files inside it go through `printable` where they are put in)."""
    return "\n".join(printable(line) for line in str(message).split("\n"))


def _written_out(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) <= 0xff else
                                f"\\u{ord(char):04x}")
