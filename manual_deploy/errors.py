"""The one exception hierarchy of manual-deploy.

Domain code raises these; only `manual_deploy.cli` turns them into exit codes, so every command
fails the same way: one line saying what went wrong, one line saying what to do next.
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
REFUSED = 3
TIMED_OUT = 4
INTERRUPTED = 130  # 128 + the signal: SIGINT (Ctrl-C)
TERMINATED = 143  # SIGTERM (`kill PID`)
HUNG_UP = 129  # SIGHUP (the terminal was closed)

EXIT_CODES = {
    OK: "success",
    FAILED: "the operation failed (e.g. a push was rejected, a deploy failed and was rolled back)",
    USAGE: "usage error or bad input (unknown app/env/commit, invalid config, not a git repository)",
    REFUSED: "refused by a safety check (unmerged commit, name collision, lock held, no confirmation)",
    TIMED_OUT: "a wait timed out",
    INTERRUPTED: "interrupted (Ctrl-C); what had started was rolled back and the lock released",
    TERMINATED: "terminated (SIGTERM), cleaned up as on Ctrl-C",
    HUNG_UP: "hung up (SIGHUP: the terminal was closed), cleaned up as on Ctrl-C",
}


class ManualDeployError(Exception):
    """Base of every expected failure: carries a message, a next step and an exit code."""

    exit_code = FAILED

    def __init__(self, message: str, *, hint: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}


class OperationFailed(ManualDeployError):
    """The operation was attempted and did not succeed (exit 1)."""

    exit_code = FAILED


class UsageError(ManualDeployError):
    """The user asked for something that cannot be valid (exit 2)."""

    exit_code = USAGE


class ConfigError(UsageError):
    """The config file is missing, unreadable or invalid (exit 2)."""


class Refused(ManualDeployError):
    """A safety check said no; nothing was changed (exit 3)."""

    exit_code = REFUSED


class TimedOut(ManualDeployError):
    """A bounded wait ran out of time (exit 4)."""

    exit_code = TIMED_OUT


class Interrupted(ManualDeployError):
    """Ctrl-C, SIGTERM or SIGHUP; carries where we were (exit 130, 143 or 129: 128 + the signal)."""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        from manual_deploy import interrupts

        return interrupts.exit_code()
