"""Tables and times as a terminal shows them: the helpers every view shares."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def terminal_style() -> dict[str, Any]:
    """Colour and width of a terminal on stdout; wide and plain when piped, so nothing wraps in a log."""
    import shutil
    import sys

    if sys.stdout.isatty():
        return {"width": shutil.get_terminal_size((200, 24)).columns, "color": True}
    return {"width": 200, "color": False}


def render(*renderables, width: int, color: bool, soft_wrap: bool = False) -> str:
    """Rich renderables as a string, ANSI-coloured only when stdout is a terminal.

    `soft_wrap`: a long line stays one line (the terminal wraps it; grep still finds it whole)."""
    import io

    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False, soft_wrap=soft_wrap)
    for item in renderables:
        console.print(Text(item) if isinstance(item, str) else item)  # plain strings: never parsed as markup
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def age(stamp: datetime | None, now: datetime | None = None) -> str:
    """'3h ago' — at 3am, how long ago matters more than the date."""
    if stamp is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - stamp).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def when(stamp: datetime | None) -> str:
    """'2024-05-01 12:34Z (3h ago)'."""
    return f"{stamp.strftime('%Y-%m-%d %H:%MZ')} ({age(stamp)})" if stamp else "-"
