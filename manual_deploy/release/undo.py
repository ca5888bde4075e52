"""Bringing a release back to what ran before it: the run's own undo, whichever way its change ended.

helm's --atomic / --rollback-on-failure undo most failed upgrades by themselves; this covers the rest,
and says what it did in words the failure's message ends with: helm killed before its rollback, helm's
own rollback refused, a first install left failed / pending-install / uninstalling, a signal, a lock
taken over, the network gone while helm was changing the release. Reads of the release that meet a
network blip are asked again with backoff within --timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from manual_deploy.helm import HelmDriver, helm_error, network_failure

if TYPE_CHECKING:
    from manual_deploy.release.runner import Change

RETRY_FIRST_S, RETRY_MAX_S = 2.0, 8.0  # backoff when the cluster does not answer: 2, 4, 8, 8 … s
UNKNOWN = object()  # the release could not be read


class ReleaseUndo:
    """The undo of one run's changes in one namespace."""

    def __init__(self, helm: Callable[[], HelmDriver], namespace: str, *, env: str, timeout_s: float, out):
        self.helm, self.namespace, self.env, self.timeout_s, self.out = helm, namespace, env, timeout_s, out
        self.made_live: dict[str, int] = {}  # release → the revision an undo made live (the team's record names it)

    async def when_reachable(self, change: Change, deadline: float, blip: str):
        """The release as the cluster has it, asked again (with backoff) until the cluster answers or the
        deadline passes; UNKNOWN then."""
        try:
            return await self.read_retrying(lambda: self.helm().current(change.app.release, self.namespace),
                                            change.app.name, deadline=deadline, blip=blip)
        except Exception:  # noqa: BLE001 - pyhelm3 errors: the cluster never answered, or answered something else
            return UNKNOWN

    async def read_retrying(self, read: Callable[[], Awaitable[Any]], what: str, *, deadline: float | None = None,
                            blip: str | None = None):
        """A read through helm, asked again with backoff within --timeout while the network fails (a VPN
        blip, a frozen apiserver); any other failure, or the last one, is raised."""
        deadline = deadline or time.monotonic() + self.timeout_s
        delay = RETRY_FIRST_S
        if blip is not None:
            self.out.warn(f"  {what}: {blip}; asking the cluster again until it answers")
        while True:
            try:
                return await read()
            except Exception as exc:  # noqa: BLE001 - pyhelm3 errors
                blip = network_failure(exc)
                if blip is None or time.monotonic() + delay >= deadline:
                    raise
            self.out.warn(f"  {what}: {blip}, retrying in {delay:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def read_current(self, change: Change):
        try:
            return await self.helm().current(change.app.release, self.namespace)
        except Exception:  # noqa: BLE001 - only decides whether to undo
            return UNKNOWN

    @staticmethod
    def changed(change: Change, current) -> bool:
        """Whether the release differs from what the plan saw (UNKNOWN: assume it does)."""
        if current is UNKNOWN:
            return True
        old = change.old
        if current is None or old is None:
            return (current is None) != (old is None)
        return (current.number, current.status) != (old.number, old.status)

    @staticmethod
    def helm_undid(change: Change, current) -> bool:
        """helm's own atomic undo brought the old revision back (a new `Rollback to N`, deployed)."""
        old = change.old.number if change.old else None
        return bool(current and old and current.number > old and current.status == "deployed"
                    and current.description.lower().startswith("rollback") and change.undo_to is None)

    async def undo_if_started(self, change: Change) -> str:
        """After a signal: undo what this run had started, or say that nothing had changed."""
        current = await self.read_current(change)
        if current is not UNKNOWN and not self.changed(change, current):
            return "nothing had changed"
        return await self.undo(change)

    async def undo(self, change: Change) -> str:
        """Make what ran before live again; the tail of the failure's message. Never raises: the failure
        that made us undo stays the message, with the undo's own failure and where to look added to it."""
        try:
            return await self._undo(change)
        except Exception as exc:  # noqa: BLE001 - pyhelm3 errors: cluster unreachable, auth, timeout
            why = helm_error(exc, "rolling back failed too").message
            return f"{why}; see what runs now: `manual-deploy status --env {self.env} --app {change.app.name}`"

    async def _undo(self, change: Change) -> str:
        helm, ns, release = self.helm(), self.namespace, change.app.release
        current = await helm.current(release, ns)
        old = change.old.number if change.old else None
        if self.helm_undid(change, current):
            self.made_live[release] = current.number
            return f"rolled back: revision {current.number} is live again with {change.old_image}"  # helm's own atomic undo
        if old is None:
            await helm.uninstall(release, ns, timeout_s=120)
            return "the first install was removed again; nothing of it is left"
        previous = change.undo_to or await self.last_good(release, before=old + 1) or old  # never the revision this run made
        await helm.rollback(release, ns, previous, timeout_s=min(self.timeout_s, 300))
        now = await helm.current(release, ns)
        if now is not None:
            self.made_live[release] = now.number
        return f"rolled back to revision {previous}: revision {now.number if now else '?'} is live again with {change.old_image}"

    async def last_good(self, release: str, before: int | None = None) -> int | None:
        history = await self.helm().history(release, self.namespace)
        good = [r.number for r in history if r.status in ("deployed", "superseded") and (before is None or r.number < before)]
        return max(good) if good else None

    async def describe(self, change: Change) -> str:
        try:
            current = await self.helm().current(change.app.release, self.namespace)
        except Exception:  # noqa: BLE001 - only a description of the failure
            return "release state unknown"
        if current is None:
            return "nothing installed"
        return f"release now at revision {current.number}, {current.status}: {current.description}"
