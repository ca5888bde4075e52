"""Durations as people type them on the command line: 90s, 10m, 1h30m, or plain seconds."""

from __future__ import annotations

import re

from manual_deploy.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_HINT = "use e.g. 90s, 10m, 1h30m or a number of seconds (units: h, m, s, ms)"


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds in `text`; a bare number means seconds. Refuses zero, negatives and junk."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif value and _PART.sub("", value) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    else:
        raise UsageError(f"invalid {option}: {text!r}", hint=_HINT)
    if seconds <= 0:
        raise UsageError(f"invalid {option}: {text!r} must be more than zero", hint=_HINT)
    return seconds


def format_duration(seconds: float) -> str:
    """`75.2` -> `1m15s`: short enough for progress lines."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
