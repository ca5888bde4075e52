"""Timestamps as helm, the kube API, GitLab and our audit log write them, read one way; ours written one way.

RFC 3339 with any number of fractional digits (helm and the API server write nanoseconds), `Z` or an
offset (with or without a colon), or Python's str(datetime); no zone means UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)


def parse_time(text: str | None) -> datetime | None:
    """An aware UTC datetime, or None for anything that is not a timestamp."""
    match = _TIMESTAMP.match((text or "").strip())
    if not match:
        return None
    frac = (match.group("frac") or "0")[:6].ljust(6, "0")
    tz = match.group("tz") or "+00:00"
    tz = "+00:00" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    try:
        stamp = datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}.{frac}{tz}")
    except ValueError:
        return None
    return stamp.astimezone(timezone.utc)


def iso(stamp: datetime | None) -> str | None:
    """The UTC second, as our JSON results give every time: `2024-05-01T12:34:56Z`."""
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None
