"""The deploy locks of one run: every changing app's Lease, all or none, given back whatever happens."""

from __future__ import annotations

import asyncio
from typing import Callable

from manual_deploy.errors import ManualDeployError


class LockSet:
    """Takes and releases `manual_deploy.lock.DeployLock`s for several apps at once."""

    def __init__(self, kube_client: Callable, namespace: str, *, reason: str, duration_s: int, break_lock: bool, out):
        self.kube_client, self.namespace = kube_client, namespace
        self.reason, self.duration_s, self.break_lock, self.out = reason, duration_s, break_lock, out
        self.held: dict = {}

    def get(self, app: str):
        return self.held.get(app)

    async def take(self, apps: list[str]) -> None:
        """Every app's lock, or none: a refusal for one app leaves all of them untouched."""
        from manual_deploy.lock import DeployLock

        def take_one(app: str):
            lock = DeployLock(self.kube_client(), self.namespace, app, reason=self.reason, duration_s=self.duration_s)
            self.held[app] = lock
            lock.acquire(break_lock=self.break_lock)
            return lock

        outcomes = await asyncio.gather(*(asyncio.to_thread(take_one, app) for app in apps), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            await self.release()
            refusals = [f for f in failures if isinstance(f, ManualDeployError)]
            raise max(refusals, key=lambda e: e.exit_code == 3) if refusals else failures[0]
        for lock in outcomes:
            if lock.broken:
                self.out.warn(f"took over the deploy lock {lock.name} from {lock.broken.identity}")

    async def release(self, apps: list[str] | None = None) -> None:
        """Give back the locks of `apps` (default: all); safe to call twice."""
        names = list(self.held) if apps is None else [a for a in apps if a in self.held]
        await asyncio.gather(*(asyncio.to_thread(self.held[name].release) for name in names))
