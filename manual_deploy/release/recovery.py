"""A release left pending-* (pending-install, -upgrade, -rollback): whose it is, and bringing it back.

helm refuses to touch a pending release, so a deploy that died mid-upgrade blocks every later one.
Busy while a live run holds its lock (refused); left by a dead run (its lock expired or stopped
answering, its PID gone) or taken with --break-lock: recovered once our lock is taken; stuck with no
lock at all (plain helm died): recovered only with --recover, which the refusal names.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from manual_deploy.config import ResolvedApp
from manual_deploy.errors import Refused
from manual_deploy.helm import Revision

if TYPE_CHECKING:
    from manual_deploy.release.runner import ReleaseTransaction

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
PROGRESS_EVERY_S = 9  # a wait for another run's helm says it is still waiting at least this often


def is_pending(revision: Revision | None) -> bool:
    return revision is not None and revision.status in PENDING


def helm_may_run_for(left_by, lock) -> float:
    """How long the helm of the run whose lock we took may still write its release (s).

    A displaced live run notices at its next renewal and stops helm within the watchdog's grace; a
    dead run's watchdog stopped its helm within that grace of the death, which came after its last
    renewal. Past both bounds nobody else's helm runs, and the release can be recovered at once."""
    from manual_deploy.lock import RENEW_EVERY_S
    from manual_deploy.watchdog import STOP_GRACE_S

    if left_by is None or lock is None:
        return 0.0
    margin = RENEW_EVERY_S + STOP_GRACE_S + 2
    since_beat = left_by.heartbeat_age(datetime.now(timezone.utc)) or 0.0
    since_take = time.monotonic() - (lock.taken_at or time.monotonic())
    return max(0.0, margin - since_beat, (margin - since_take) if left_by.state() == "live" else 0.0)


class PendingRecovery:
    """The pending-* rules of one run in one namespace: refuse, wait for, or roll back a stuck release."""

    def __init__(self, release: ReleaseTransaction, *, env: str, break_lock: bool, recover: bool, timeout_s: float, out):
        self.release, self.env, self.break_lock, self.recover_asked = release, env, break_lock, recover
        self.timeout_s, self.out = timeout_s, out
        self.namespace, self.context = release.target.namespace, release.target.context

    def must_recover(self, app: ResolvedApp, tag: str, current: Revision | None) -> bool:
        """True when `current` is pending and ours to recover once our lock is taken; raises when a live
        run is at it (busy) or nobody holds its lock and --recover was not given (stuck)."""
        if not is_pending(current):
            return False
        from manual_deploy.lock import read_holder

        holder = read_holder(self.release.kube_client(), self.namespace, app.name)
        ours = self.release.locks.get(app.name)
        if holder is not None and ours is not None and holder.run_id == ours.run.run_id:
            holder = ours.taken_from  # ours already (the lock is taken while the plan reads): whose was it?
        elif holder is not None and holder.state() == "live" and not self.break_lock:
            raise self.busy(app, tag, current, holder)
        if holder is None and not self.recover_asked:
            raise self.stuck(app, current)
        return True

    def busy(self, app: ResolvedApp, tag: str, current: Revision, holder) -> Refused:
        return Refused(
            f"{app.name} is being deployed right now by {holder.describe()} "
            f"(release {app.release} is {current.status}, revision {current.number})",
            hint=f"wait for that deploy to finish (`manual-deploy status --env {self.env} --app {app.name}`); "
            f"if you know that run is dead or hung, take it over: `manual-deploy apply --env {self.env} --app {app.name} "
            f"--tag {tag} --break-lock`",
            details={"lock_holder": holder.identity},
        )

    def stuck(self, app: ResolvedApp, current: Revision) -> Refused:
        return Refused(
            f"release {app.release} is stuck in {current.status} (revision {current.number}) and no deploy holds its lock",
            hint=(
                f"`manual-deploy apply --env {self.env} --app {app.name} --recover` (rolls it back first), "
                f"or by hand `helm rollback {app.release} --namespace {self.namespace} --kube-context {self.context}`"
            ),
        )

    async def recover(self, app: ResolvedApp, current: Revision) -> Revision | None:
        """Bring the pending release back to its newest good revision (None: the stuck first install was
        removed); returns the revision the upgrade then follows.

        When another run left it (dead, or its lock just taken over), first give that run's helm time to
        stop (bounded): helm cancels and rolls back by itself, and two helms must not write one release."""
        lock = self.release.locks.get(app.name)
        left_by = lock.taken_from if lock is not None else None
        if left_by is None and not self.recover_asked:
            raise self.stuck(app, current)
        release = app.release
        wait = helm_may_run_for(left_by, lock)
        if wait > 0:
            self.out.step(f"{release}: {current.status} was left by {left_by.identity}; "
                          f"waiting up to {wait:.0f} s for its helm to stop")
            settled = await self.settled(release, wait)
            if settled is not None and settled.status not in PENDING:
                self.out.info(f"  {release}: its helm stopped; revision {settled.number} is {settled.status}")
                return settled
        return await self.roll_back(release, current)

    async def roll_back(self, release: str, current: Revision) -> Revision | None:
        """Back to the newest good revision, or uninstall a stuck first install that has none."""
        helm = self.release.helm()
        previous = await self.release.last_good(release)
        if previous is None:
            self.out.warn(f"{release}: no good revision to go back to; uninstalling the stuck install")
            await helm.uninstall(release, self.namespace, timeout_s=120)
            return None
        self.out.step(f"{release}: rolling back the stuck {current.status} to revision {previous}")
        await helm.rollback(release, self.namespace, previous, timeout_s=min(self.timeout_s, 300))
        return await helm.current(release, self.namespace)

    async def settled(self, release: str, wait_s: float) -> Revision | None:
        """The release once it is the same in two reads a second apart and no longer pending, or as it is
        after `wait_s` (progress at least every 10 s)."""
        helm = self.release.helm()
        end = started = time.monotonic()
        end += wait_s
        said, last = started, None
        while True:
            current = await helm.current(release, self.namespace)
            if current is not None and current == last and current.status not in PENDING:
                return current
            if time.monotonic() >= end:
                return current
            if time.monotonic() - said >= PROGRESS_EVERY_S:
                said = time.monotonic()
                self.out.info(f"  {release}: still {current.status if current else 'gone'} "
                              f"({int(said - started)} s of {wait_s:.0f} s)")
            last = current
            await asyncio.sleep(1.0)
