"""Named phases with their durations, each app's result, and one outcome for many apps."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from manual_deploy.errors import ManualDeployError, OperationFailed


class Phases:
    """Named phases with their durations, printed as they finish (krane's model)."""

    def __init__(self, out, prefix: str = "", on_start=None):
        self.out = out
        self.prefix = prefix
        self.on_start = on_start  # told each phase's name as it starts (the deploy lock says where the run is)
        self.timings: dict[str, float] = {}
        self.current: str | None = None

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        if self.on_start is not None:
            self.on_start(name)
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            self.timings[name] = round(took, 3)
        self.out.info(f"{self.prefix}✓ {name} ({took:.1f}s)")


@dataclass
class AppResult:
    app: str
    env: str
    result: str  # deployed | rolled back | unchanged | failed | interrupted
    image: str
    old_revision: int | None
    new_revision: int | None
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # what the verb records too (digest, replicas, config_sha, …)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data.pop("extra"), **data}


def combine(changes: list, outcomes: list, env: str) -> tuple[list[dict[str, Any]], ManualDeployError | None]:
    """Every app's result, and the one error to raise (None when all went well).

    One app: its own error, unchanged. Several: one error whose message lists every app's outcome, a
    failed app with its own reason and its own next command; its exit code is the worst, as documented
    (a failed change, 1, outranks a refusal).
    """
    results, errors = [], []
    for change, outcome in zip(changes, outcomes):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, ManualDeployError):
                outcome = OperationFailed(f"{change.app.name}: {type(outcome).__name__}: {outcome}")
            errors.append(outcome)
            results.append({"app": change.app.name, "result": "failed", "message": outcome.message,
                            "hint": outcome.hint, "exit_code": outcome.exit_code})
        else:
            results.append(outcome.as_dict())
    if not errors:
        return results, None
    worst = max(errors, key=lambda e: (e.exit_code == 1, e.exit_code))
    if len(changes) == 1:
        worst.details = {**worst.details, "results": results}
        return results, worst
    failed = [r["app"] for r in results if r["result"] == "failed"]
    block = "\n".join(_outcome_line(r) for r in results)
    error = type(worst)(f"{len(errors)} of {len(changes)} apps failed in {env}: {', '.join(failed)}\n{block}",
                        hint="fix each failed app as its own `next:` above says; the others are done",
                        details={"results": results})
    return results, error


def _outcome_line(result: dict[str, Any]) -> str:
    name = result["app"]
    if result["result"] != "failed":
        revision = result.get("new_revision")
        return f"  ✓ {name}: {result['result']}" + (f" (revision {revision})" if revision is not None else "")
    message = result["message"]
    reason = message[len(name) + 2:] if message.startswith(f"{name}: ") else message
    line = f"  ✗ {name}: {reason}"
    return line + (f"\n      next: {result['hint']}" if result.get("hint") else "")
