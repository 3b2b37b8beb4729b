"""Exceptions as the launcher's messages show them: one plain sentence with the cause.

Libraries wrap their failures several layers deep, and their messages quote the inner ones as
reprs: `Error while fetching server API version: ('Connection aborted.',
FileNotFoundError(2, 'No such file or directory'))`. What a user can act on is the operating
system's error at the bottom of that chain, so that is what is shown.
"""

from __future__ import annotations

import re
import socket

# `SomeError(` or `SomeException(`: a repr quoted inside a message
_REPR = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Warning)\(")


def os_cause(error: BaseException) -> OSError | None:
    """The operating system's error under `error`: requests and urllib3 keep the one they
    wrap in `args`, `reason` or `__cause__`. None when there is none."""
    seen, pending = set(), [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        # requests' exceptions are OSErrors too, without an errno: only the real one counts
        if isinstance(current, TimeoutError) or (isinstance(current, OSError)
                                                  and current.errno is not None):
            return current
        context = None if current.__suppress_context__ else current.__context__
        inner = (current.__cause__, context, getattr(current, "reason", None),
                 *getattr(current, "args", ()))
        pending += [item for item in inner if isinstance(item, BaseException)]
    return None


def os_reason(error: OSError) -> str:
    """`Permission denied: /runs/x`, not `[Errno 13] Permission denied: '/runs/x'`."""
    if isinstance(error, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(error, TimeoutError) and not error.strerror:
        return "timed out"
    reason = error.strerror or "failed"
    return f"{reason}: {error.filename}" if error.filename else reason


def looks_raw(text: str) -> bool:
    """Whether `text` quotes an exception's repr rather than saying something."""
    return bool(_REPR.search(text))


def explain(error: BaseException) -> str:
    """One plain sentence for `error`. The project's own exceptions already carry one; an
    operating-system failure is told by its reason; anything else by its kind and message,
    or its kind alone when the message is made of reprs."""
    text = " ".join(str(error).split())
    if type(error).__module__.split(".")[0] in ("artifact", "mgrb") and text:
        return text
    cause = os_cause(error)
    if cause is not None:
        return os_reason(cause)
    if not text or looks_raw(text):
        return f"{type(error).__name__} (no further detail)"
    return f"{type(error).__name__}: {text}"
