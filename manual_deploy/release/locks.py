"""The deploy locks of one run: every changing app's Lease, all or none, kept alive by a heartbeat,
given back whatever happens."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Callable

from manual_deploy.errors import ManualDeployError, Refused


class LockSet:
    """Takes, renews and releases `manual_deploy.lock.DeployLock`s for several apps at once.

    While any is held, one thread renews them all every RENEW_EVERY_S (and at once when a phase
    starts, so the lock says where the run is). A lock found taken over is marked lost; the runner
    stops that app's helm at once and never fights for it.
    """

    def __init__(self, kube_client: Callable, namespace: str, *, run, break_lock: bool, yes: bool, out):
        self.kube_client, self.namespace, self.run = kube_client, namespace, run
        self.break_lock, self.yes, self.out = break_lock, yes, out
        self.held: dict = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._confirmed = threading.Lock()
        self._break_agreed = False

    def get(self, app: str):
        return self.held.get(app)

    def lost(self, app: str):
        """The Holder that took this app's lock from us, or None while it is ours."""
        lock = self.held.get(app)
        return lock.lost_to if lock is not None else None

    def phase(self, app: str, phase: str) -> None:
        """Where this app's run is now; the heartbeat writes it at once."""
        lock = self.held.get(app)
        if lock is not None:
            lock.phase = phase
            self._wake.set()

    def describe(self, images: dict[str, str]) -> None:
        """What each app's run changes (`old → new`), for whoever reads its lock."""
        for app, image in images.items():
            if app in self.held:
                self.held[app].image = image
        self._wake.set()

    async def take(self, apps: list[str], *, deadline: float | None = None) -> None:
        """Every app's lock, or none: a refusal for one app leaves all of them untouched."""
        from manual_deploy.lock import DeployLock

        def take_one(app: str):
            lock = DeployLock(self.kube_client(), self.namespace, app, run=self.run, say=self.out.info)
            self.held[app] = lock
            lock.acquire(break_lock=self.break_lock, confirm_break=self._confirm_break, deadline=deadline, abandon=self._stop)
            return lock

        outcomes = await asyncio.gather(*(asyncio.to_thread(take_one, app) for app in apps), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            await self.release()
            refusals = [f for f in failures if isinstance(f, ManualDeployError)]
            raise max(refusals, key=lambda e: e.exit_code == 3) if refusals else failures[0]
        for lock in outcomes:
            if lock.taken_from is not None:
                self.out.warn(f"{lock.taken_from.obituary()}: took over its lock {lock.name}"
                              if lock.taken_from.state() in ("dead", "expired", "stale")
                              else f"took over the deploy lock {lock.name} from {lock.taken_from.describe()}")
        self._start_heartbeat()

    def _confirm_break(self, holder) -> None:
        """--break-lock on a live holder: say whose run it is and ask once (--yes: no question)."""
        with self._confirmed:
            if self.yes or self._break_agreed:
                return
            if not sys.stdin.isatty():
                raise Refused(f"taking the deploy lock from {holder.describe()} needs confirmation and there is no "
                              "terminal to ask on", hint="re-run with --break-lock --yes if that run is really dead or stuck")
            self.out.info(f"The deploy lock is held by {holder.describe()}. Its helm will be stopped and its release "
                          "recovered before your change. Type 'yes' to take it over:")
            try:
                answer = input("> ").strip().lower()
            except EOFError:
                answer = ""
            if answer != "yes":
                raise Refused(f"the lock stays with {holder.identity}; nothing was changed",
                              hint="re-run with --break-lock and answer yes, or wait for that deploy")
            self._break_agreed = True

    # the heartbeat ---------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._heart is None and self.held:
            self._heart = threading.Thread(target=self._beat, name="lock-heartbeat", daemon=True)
            self._heart.start()

    def _beat(self) -> None:
        from manual_deploy.lock import RENEW_EVERY_S

        unreachable: set[str] = set()
        while not self._stop.is_set():
            self._wake.wait(RENEW_EVERY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            for app, lock in list(self.held.items()):
                if lock.lost_to is not None or not lock._held:
                    continue
                try:
                    outcome = lock.renew()
                except Exception as exc:  # noqa: BLE001 - the heartbeat never dies of one bad answer
                    outcome = f"unreachable: {type(exc).__name__}"
                if outcome == "lost":
                    self.out.error(f"{app}: the deploy lock was taken over by {lock.lost_to.describe()}; stopping")
                elif outcome.startswith("unreachable") and app not in unreachable:
                    unreachable.add(app)
                    self.out.warn(f"{app}: cannot renew the deploy lock ({outcome.split(': ', 1)[1]}); still trying")
                elif outcome == "ok" and app in unreachable:
                    unreachable.discard(app)
                    self.out.info(f"{app}: the cluster answers again and the deploy lock is still ours")

    async def release(self, apps: list[str] | None = None) -> None:
        """Give back the locks of `apps` (default: all, and stop the heartbeat); safe to call twice."""
        names = list(self.held) if apps is None else [a for a in apps if a in self.held]
        if apps is None:
            self._stop.set()
            self._wake.set()
        await asyncio.gather(*(asyncio.to_thread(self.held[name].release) for name in names))
