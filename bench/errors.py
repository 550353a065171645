"""The suite's user-facing errors: one family, one message shape.

A user's mistake (a bad params key, a malformed scenario, profile or trace file, an
unknown name) raises a subclass of :class:`BenchError`. Its message is one line
that names *where* (file and key, or file and line), *what* is wrong, the bad value
(truncated, never expanded) and what is allowed. ``python -m bench`` prints it as
``error: <message>`` and exits with status 2 — no traceback for a user's mistake.

Errors of the device layer (``hw.base.MeterError`` and its subclasses) are handled
the same way by the CLI; ``hw`` does not import this module (layers import one way).
"""

from __future__ import annotations

import reprlib
from typing import Any, Iterable

_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 2


def short(value: Any) -> str:
    """A bounded ``repr`` of a user's value: never expands a huge or deeply nested value."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # a value whose repr fails must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def allowed_list(options: Iterable[Any], limit: int = 12) -> str:
    opts = [str(o) for o in options]
    more = f", ... ({len(opts) - limit} more)" if len(opts) > limit else ""
    return ", ".join(opts[:limit]) + more


class BenchError(ValueError):
    """A user's input is invalid. Build messages with :meth:`at` to keep their shape."""

    @classmethod
    def at(cls, where: str, problem: str, value: Any = ..., allowed: str | None = None) -> "BenchError":
        msg = f"{where}: {problem}"
        if value is not ...:
            msg += f" (got {short(value)})"
        if allowed:
            msg += f"; allowed: {allowed}"
        # one line whatever the user's text holds (a key or a CSV header may contain a newline)
        return cls(msg.replace("\r", "\\r").replace("\n", "\\n"))


class ConfigError(BenchError):
    """params.yaml (or a learner config) is invalid."""


class WorkloadError(BenchError):
    """An unknown or malformed DNN workload."""


class DataFileError(BenchError):
    """A shipped or user data file (profile, scenario, link, calibration, curve) is malformed."""
