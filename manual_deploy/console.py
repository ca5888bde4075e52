"""Where words go: progress and warnings to stderr, the result to stdout.

Keeping results alone on stdout lets `tag=$(manual-deploy tag)` and `--output json | jq` work
while a human still sees every step on the terminal.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


class Output:
    """One per invocation; commands report through it and never print directly."""

    def __init__(self, fmt: str = "text", verbose: bool = False):
        self.format = fmt
        self.verbose = verbose
        self._err = None
        self._styled: bool | None = None

    @property
    def json(self) -> bool:
        return self.format == "json"

    @property
    def styled(self) -> bool:
        """Style (rich) only where it shows: a terminal, or FORCE_COLOR / TTY_COMPATIBLE set.

        Anywhere else (a pipe, a CI log, a test) rich would print the very same plain text, and
        loading it costs every command ≈ 0.05 s of start-up.
        """
        if self._styled is None:
            forced = os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"
            self._styled = bool(forced) or _is_terminal(sys.stderr)
        return self._styled

    def _console(self):
        if self._err is None:
            from rich.console import Console  # deferred: keeps `--help` and start-up light

            self._err = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._err

    def _print(self, text: str, style: str | None = None) -> None:
        if self.styled:
            self._console().print(text, style=style, markup=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def info(self, message: str) -> None:
        self._print(message)

    def step(self, message: str) -> None:
        self._print(f"• {message}")

    def success(self, message: str) -> None:
        self._print(f"✓ {message}", style="green")

    def warn(self, message: str) -> None:
        self._print(f"warning: {message}", style="bold yellow")

    def debug(self, message: str) -> None:
        if self.verbose:
            self._print(message, style="dim")

    def error(self, message: str, hint: str | None = None) -> None:
        self._print(f"error: {message}", style="bold red")
        if hint:
            self._print(f"  next: {hint}")

    def result(self, data: dict[str, Any], text: str) -> None:
        """The command's answer: `text` for humans, `data` as one JSON object with --output json."""
        if self.json:
            sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()


class Ticker:
    """Keeps a long wait visible: a live status line on a terminal, a plain line every `interval` s otherwise.

    Use as a context manager; `note()` prints a permanent line (a phase change), `update()` refreshes.
    """

    def __init__(self, out: Output, interval: float, clock):
        self.out = out
        self.interval = interval
        self.clock = clock
        self._last_line = None
        self._status = None

    def __enter__(self) -> "Ticker":
        if self.out.styled and self.out._console().is_terminal:
            self._status = self.out._console().status("waiting…")
            self._status.start()
        self._last_line = self.clock()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def due(self) -> float:
        """When the next plain line is owed (monotonic time)."""
        return self._last_line + self.interval

    def note(self, message: str) -> None:
        self.out.info(message)
        self._last_line = self.clock()

    def update(self, message: str) -> None:
        if self._status is not None:
            self._status.update(message)
        elif self.clock() >= self.due():
            self.out.info(message)
            self._last_line = self.clock()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
