"""Where words go: progress and warnings to stderr, the result to stdout.

Keeping results alone on stdout lets `tag=$(manual-deploy tag)` and `--output json | jq` work
while a human still sees every step on the terminal.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class Output:
    """One per invocation; commands report through it and never print directly."""

    def __init__(self, fmt: str = "text", verbose: bool = False):
        self.format = fmt
        self.verbose = verbose
        self._err = None

    @property
    def json(self) -> bool:
        return self.format == "json"

    def _console(self):
        if self._err is None:
            from rich.console import Console  # deferred: keeps `--help` and start-up light

            self._err = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._err

    def info(self, message: str) -> None:
        self._console().print(message, markup=False)

    def step(self, message: str) -> None:
        self._console().print(f"• {message}", markup=False)

    def success(self, message: str) -> None:
        self._console().print(f"✓ {message}", style="green", markup=False)

    def warn(self, message: str) -> None:
        self._console().print(f"warning: {message}", style="bold yellow", markup=False)

    def debug(self, message: str) -> None:
        if self.verbose:
            self._console().print(message, style="dim", markup=False)

    def error(self, message: str, hint: str | None = None) -> None:
        self._console().print(f"error: {message}", style="bold red", markup=False)
        if hint:
            self._console().print(f"  next: {hint}", markup=False)

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
        console = self.out._console()
        if console.is_terminal:
            self._status = console.status("waiting…")
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
