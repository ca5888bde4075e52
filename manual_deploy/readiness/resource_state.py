"""What one look found out about one resource, and the failure that stops a deploy.

krane's model: every kind answers "ready? failing? why?" in words a person on call can act on,
so a stuck deploy names the resource and the reason instead of waiting out helm's --timeout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable

from manual_deploy.timestamps import parse_time

EVENT_LINES = 8  # events kept per resource: enough for the story, short enough for a terminal


@dataclass(frozen=True)
class ResourceState:
    """One resource at one look. `failing` is a short reason key, set only when waiting will not fix it."""

    kind: str
    name: str
    ready: bool
    summary: str
    failing: str | None = None
    events: tuple[str, ...] = ()
    container: str | None = None  # pods: the container the failure is about (its logs are the evidence)
    message: str = ""  # a failing state's own words (the Event's or the container's), for Failure.message
    owned: str = ""  # what a failing state is about, when the object owns it: `job/x-29012345` of a CronJob

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class Failure:
    """A resource that stayed failing past the grace period, with the evidence to fix it."""

    kind: str
    name: str
    reason: str
    message: str
    events: list[str] = field(default_factory=list)
    container: str | None = None
    logs: list[str] = field(default_factory=list)
    summary: str = ""  # the state in a few words: `Pending — storageclass "x" not found (ProvisioningFailed, 3×)`
    owned: str = ""  # see ResourceState.owned

    @property
    def subject(self) -> str:
        """`pod ingest-core-5f…` / `PersistentVolumeClaim data`: what to name in an error message."""
        return f"pod {self.name}" if self.kind == "Pod" else f"{self.kind} {self.name}"

    def report(self) -> str:
        where = f"{self.subject} container {self.container}" if self.container else self.subject
        lines = [f"{where}: {self.reason} {self.message}".rstrip()]
        if self.events:
            lines.append("  recent events:")
            lines.extend(f"    {line}" for line in self.events)
        if self.logs:
            lines.append(f"  last {len(self.logs)} log lines of {self.container}:")
            lines.extend(f"    {line}" for line in self.logs)
        return "\n".join(lines)


# --- events ------------------------------------------------------------------------------------------


def event_time(event: dict[str, Any]) -> dt.datetime:
    """When it last happened: lastTimestamp (core/v1), else series/eventTime (events.k8s.io writers)."""
    for text in (event.get("lastTimestamp"), (event.get("series") or {}).get("lastObservedTime"),
                 event.get("eventTime"), event.get("firstTimestamp"), (event.get("metadata") or {}).get("creationTimestamp")):
        when = parse_time(text)
        if when is not None:
            return when
    return dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def event_count(event: dict[str, Any]) -> int:
    return int(event.get("count") or (event.get("series") or {}).get("count") or 1)


def ordered(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first, like `kubectl describe`."""
    return sorted(events, key=event_time)


def latest(events: list[dict[str, Any]], *reasons: str) -> dict[str, Any] | None:
    found = [e for e in events if e.get("reason") in reasons]
    return max(found, key=event_time) if found else None


def times(events: list[dict[str, Any]], *reasons: str) -> int:
    """How often the reasons were reported, counting each Event's repeats."""
    return sum(event_count(e) for e in events if e.get("reason") in reasons)


def event_line(event: dict[str, Any]) -> str:
    count = event_count(event)
    repeat = f" ({count}×)" if count > 1 else ""
    return f"{event.get('type') or ''} {event.get('reason') or ''}: {event.get('message') or ''}".strip() + repeat


def event_lines(events: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(event_line(e) for e in ordered(events)[-EVENT_LINES:])


def because(events: list[dict[str, Any]], *reasons: str) -> tuple[str, str, int] | None:
    """(reason, message, count) of the newest event with one of the reasons, counted over all of them."""
    event = latest(events, *reasons)
    if event is None:
        return None
    return event.get("reason") or "", (event.get("message") or "").strip(), times(events, event.get("reason") or "")


def state(obj_kind: str, name: str, ready: bool, summary: str, *, failing: str | None = None,
          events: list[dict[str, Any]] | None = None, container: str | None = None, message: str = "",
          owned: str = "") -> ResourceState:
    """A ResourceState whose events are shown only when it is not ready (ready ones need no story)."""
    return ResourceState(obj_kind, name, ready, summary, failing, () if ready else event_lines(events or []), container,
                         message, owned)


def with_worst_pod(summary: str, pods: Iterable[ResourceState], *, failing_only: bool = False) -> str:
    """A workload's summary with the pod that best says why: a failing one, else (unless failing_only) any unready one."""
    unready = [p for p in pods if not p.ready]
    worst = next((p for p in unready if p.failing), None if failing_only or not unready else unready[0])
    return f"{summary} (pod {worst.name}: {worst.summary})" if worst is not None else summary


def name_of(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or "?"
