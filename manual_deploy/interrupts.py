"""How a run is told to stop: SIGINT, SIGTERM and SIGHUP are handled alike.

The first of them becomes a Ctrl-C (KeyboardInterrupt, or asyncio's cancellation of the main task),
so the one cleanup path written for Ctrl-C — stop helm, roll back what had started, release every
lock, record, tell the team — runs for a closed terminal and a `kill PID` too. Later TERM/HUPs are
ignored while that cleanup runs (a second Ctrl-C still abandons it: the lock then expires by itself
and the watchdog stops helm). The exit code names the signal: 130, 143, 129.

A closed terminal cannot be written to any more: on SIGHUP, stdout and stderr that were that terminal
are pointed at /dev/null first, so the cleanup's own messages cannot kill it (the audit log keeps the story).
"""

from __future__ import annotations

import os
import signal

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: int | None = None


def install() -> None:
    """Turn SIGTERM and SIGHUP into the first Ctrl-C (main thread only, as Python requires)."""
    global _received
    _received = None
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background by a shell (`cmd &`, nohup): SIGINT comes in ignored, and the
        # TERM/HUP → Ctrl-C path below needs it back
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def received() -> int:
    """The signal that stopped the run (SIGINT when it was Ctrl-C or no signal at all)."""
    return _received or signal.SIGINT


def name() -> str:
    return signal.Signals(received()).name


def exit_code() -> int:
    return 128 + received()


def _on_signal(signum, _frame) -> None:
    global _received
    if _received is not None:
        return  # already stopping: let the cleanup finish
    _received = signum
    if signum == signal.SIGHUP:
        _detach_terminal()
    signal.raise_signal(signal.SIGINT)  # from here on it is a Ctrl-C, wherever the run is


def _detach_terminal() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)
