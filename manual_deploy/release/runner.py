"""The guarded release sequence, written once: every verb that changes a release runs through it.

    [lock early, when nobody is asked] plan → confirm → lock all → notify start →
    per app: before-steps → helm under watch → final image check → after-steps
             (undo on failure) → unlock → audit
    → record in GitLab (when it answers) → notify end → one outcome for all apps

A run can die at any point: a signal (Ctrl-C, `kill`, a closed terminal) cancels it and the same
cleanup runs — helm stopped, what had started undone, locks released, the record written
("interrupted by SIGHUP"), the team told. The locks are a heartbeat; one found taken over stops that
app's helm at once. A network blip before anything changed is retried within --timeout.

A verb (apply, rollback; deploy and promote go through apply) supplies the plan as `Change`s: which
helm operation to start, which image every new pod must run afterwards, what to record.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from manual_deploy import audit, interrupts
from manual_deploy.config import ResolvedApp
from manual_deploy.errors import Interrupted, ManualDeployError, Refused
from manual_deploy.helm import HelmDriver, Revision, driver_for, network_failure
from manual_deploy.kube import Target, api_client
from manual_deploy.release.locks import LockSet
from manual_deploy.release.outcome import AppResult, Phases, combine
from manual_deploy.release.operation import WatchedHelm
from manual_deploy.release.team_log import TeamLog
from manual_deploy.release.undo import ReleaseUndo

MAX_PARALLEL_APPS = 8


@dataclass(frozen=True)
class Guard:
    """What the guarded sequence needs to know of the run, whichever verb planned it."""

    command: str  # apply | deploy | promote | rollback: what the audit record and the team's messages say
    env: str
    reason: str = ""
    timeout_s: float = 600.0
    grace_s: float = 60.0
    yes: bool = False
    break_lock: bool = False
    kubeconfig: str | None = None
    confirm: bool = False  # the env asks for its name to be typed (prod)


@dataclass
class Change:
    """One release to change. `start` launches the helm operation; every new pod must then run `expected_image`."""

    app: ResolvedApp
    action: str  # "upgrade" | "rollback": names the phase and the messages
    start: Callable[[HelmDriver], Awaitable[Any]]
    image_ref: str  # what is announced and recorded
    expected_image: str  # the chart's `image` value
    old: Revision | None
    old_image: str = "the previous image"
    unchanged: bool = False
    undo_to: int | None = None  # None: the newest good revision up to `old` (apply); else exactly this one
    retry_hint: str = ""  # the next step when the image is at fault
    rerun: str = ""  # the same command again, once the cluster or the chart is fixed
    before: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    after: list[tuple[str, Callable[[Revision], Awaitable[None]]]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # extra audit fields (digest, replicas, config_sha, …)


class ReleaseTransaction:
    """Runs the guarded sequence for the changes a verb planned."""

    def __init__(self, config, guard: Guard, target: Target, out, phases: Phases):
        from manual_deploy.lock import Run

        self.config, self.guard, self.target, self.out, self.phases = config, guard, target, out, phases
        self.run_info = Run(reason=guard.reason, command=guard.command)
        self.locks = LockSet(self.kube_client, target.namespace, run=self.run_info, break_lock=guard.break_lock,
                             yes=guard.yes, out=out)
        self.undone: dict[str, str] = {}  # app → what the undo after an interruption did
        self.undoer = ReleaseUndo(self.helm, target.namespace, env=guard.env, timeout_s=guard.timeout_s, out=out)
        self._helm: HelmDriver | None = None
        self._kube = None
        self._kube_guard = threading.Lock()
        self.audited: list[dict[str, Any]] = []  # this run's audit records, for GitLab
        self.team_log = TeamLog(self.kube_client, target.namespace, guard.env, out)

    # shared clients ------------------------------------------------------------------------------

    def helm(self) -> HelmDriver:
        if self._helm is None:
            self._helm = driver_for(self.config, self.target, kubeconfig=self.guard.kubeconfig, timeout_s=self.guard.timeout_s)
            self.out.debug(f"helm {self._helm.version} at {self._helm.executable}")
        return self._helm

    def kube_client(self):
        with self._kube_guard:  # the lock threads and a plan's drift check may ask at the same time
            if self._kube is None:
                self._kube = api_client(self.target, retries=False)  # blips are retried here, each within its timeout
            return self._kube

    # the sequence --------------------------------------------------------------------------------

    async def run(self, apps: list[str], plan: Callable[[], Awaitable[list[Change]]]) -> list[dict[str, Any]]:
        """Plan, confirm, lock, change, record; returns every app's result or raises one combined error.

        Nobody to ask (--yes, or an env without confirm): the locks are taken while the plan reads the
        releases. Someone to ask: only after they said yes, so a prompt left open blocks nobody.
        """
        prompt = (self.guard.confirm or self.guard.break_lock) and not self.guard.yes  # --break-lock asks whose lock it takes
        deadline = time.monotonic() + self.guard.timeout_s  # the lock's own retries of a network blip
        locking = None if prompt else asyncio.create_task(self.locks.take(apps, deadline=deadline))
        try:
            try:
                with self.phases("plan"):
                    changes = await plan()
            except Refused:
                if locking is not None:  # a held lock explains a busy release better than the plan can
                    await locking
                raise
            if prompt:
                with self.phases("confirm"):
                    self.confirm(changes)
                locking = asyncio.create_task(self.locks.take([c.app.name for c in changes if not c.unchanged],
                                                              deadline=time.monotonic() + self.guard.timeout_s))
            with self.phases("lock"):
                await locking
            self.locks.describe({c.app.name: f"{c.old_image} → {c.image_ref}" for c in changes if not c.unchanged})
            if not prompt:
                with self.phases("confirm"):
                    self.confirm(changes)  # nothing to ask: --yes, or an env without confirm
            await self.locks.release([c.app.name for c in changes if c.unchanged])
            return await self._change_all(changes)
        finally:
            if locking is not None:
                await asyncio.gather(locking, return_exceptions=True)
            await self.locks.release()

    def interrupted(self) -> Interrupted:
        """The error of a run stopped by a signal: what each app's cleanup did."""
        done = "; ".join(f"{app}: {what}" for app, what in self.undone.items())
        where = self.phases.current if not self.undone else "the change"
        return Interrupted(f"interrupted by {interrupts.name()} during {where or self.guard.command}"
                           f"{'; ' + done if done else '; nothing had changed'}; every deploy lock was released",
                           hint=f"see what runs now: `manual-deploy status --env {self.guard.env}`; "
                                "run the same command again to carry on")

    def confirm(self, changes: list[Change]) -> None:
        if all(c.unchanged for c in changes):
            return
        action = "roll back" if all(c.action == "rollback" for c in changes if not c.unchanged) else "deploy to"
        confirm_env(self.guard.env, self.guard.confirm, self.guard.yes, self.out, self.target.context, action=action)

    async def _change_all(self, changes: list[Change]) -> list[dict[str, Any]]:
        from manual_deploy.notify import Notifier

        notifier = Notifier.from_config(self.config, self.out)
        announced = [{"app": c.app.name, "image": c.image_ref} for c in changes if not c.unchanged]
        send = (lambda event, **kw: asyncio.to_thread(notifier.send, event, command=self.guard.command, env=self.guard.env,
                                                      apps=announced, reason=self.guard.reason, **kw))
        if announced:
            await send("start")
        self.team_log.push_queue()
        semaphore = asyncio.Semaphore(MAX_PARALLEL_APPS)

        async def bounded(change: Change) -> AppResult:
            async with semaphore:
                return await self._change_one(change)

        try:
            outcomes = await asyncio.gather(*(bounded(c) for c in changes), return_exceptions=True)
        except asyncio.CancelledError:  # a signal: every app has cleaned up by now; tell the team
            if announced:
                detail = "; ".join(f"{app}: {undone}" for app, undone in self.undone.items())
                await send("failure", detail=f"interrupted by {interrupts.name()}" + (f" ({detail})" if detail else ""))
            raise
        results, error = combine(changes, outcomes, self.guard.env)
        await self.team_log.settle()
        await self._record_in_gitlab(results)
        if announced:
            detail = "; ".join(f"{r['app']}: {r['result']}" + (f" ({r['message']})" if r["result"] == "failed" else "")
                               for r in results)
            await send("failure" if error else "success", detail=detail)
        if error:
            raise error
        return results

    async def _change_one(self, change: Change) -> AppResult:
        name = change.app.name
        result = AppResult(app=name, env=self.guard.env, result="failed", image=change.image_ref,
                           old_revision=change.old.number if change.old else None, new_revision=None, extra=change.record)
        if change.unchanged:
            result.result, result.new_revision, result.message = "unchanged", result.old_revision, "already live; nothing to do"
            return result
        phases = Phases(self.out, prefix=f"[{name}] ", on_start=lambda phase: self.locks.phase(name, phase))
        lock = self.locks.get(name)
        begun = audit.stamp(self._entry(change, result, lock, self._commit_of(change)))
        started = self.team_log.start(begun)
        try:
            for step_name, step in change.before:
                with phases(step_name):
                    await step()
            with phases(f"{change.action}+verify"):
                revision = await WatchedHelm(self).run(change)
            result.new_revision = revision.number
            for step_name, step in change.after:
                with phases(step_name):
                    await step(revision)
            result.result = "deployed" if change.action == "upgrade" else "rolled back"
            result.message = f"revision {revision.number} is live with {change.image_ref}"
        except ManualDeployError as exc:
            result.message = exc.message
            if self.locks.lost(name) is not None:
                result.result = "interrupted"
            raise
        except asyncio.CancelledError:
            result.result = "interrupted"
            self.undone.setdefault(name, "nothing had changed")
            result.message = f"interrupted by {interrupts.name()} during {phases.current or 'the lock'}; {self.undone[name]}"
            raise
        finally:
            await asyncio.to_thread(lock.release)
            result.timings = {**self.phases.timings, **phases.timings}
            line = audit.record({**self._entry(change, result, lock, begun["commit"]), "id": begun["id"], "started": begun["at"]})
            self.audited.append(line)
            await self.team_log.finish(line, started)
        return result

    async def undo(self, change: Change) -> str:
        """Make what ran before live again (see `ReleaseUndo.undo`)."""
        return await self.undoer.undo(change)

    async def last_good(self, release: str, before: int | None = None) -> int | None:
        return await self.undoer.last_good(release, before)

    async def read_release(self, app: ResolvedApp, early=None) -> tuple[Revision | None, dict]:
        """The app's live revision and its values: from the `helm status` started early when there is one
        (read again if it met a network blip), else read now, retried within --timeout."""
        helm, namespace = self.helm(), self.target.namespace
        again = lambda: self.read_retrying(lambda: helm.current_and_values(app.release, namespace), app.name)  # noqa: E731
        if early is None:
            return await again()
        try:
            return await asyncio.to_thread(early.result)
        except Exception as exc:  # noqa: BLE001 - a blip while the early read ran: ask again
            if network_failure(exc) is None:
                raise
            return await again()

    async def read_retrying(self, read: Callable[[], Awaitable[Any]], what: str, **kwargs):
        return await self.undoer.read_retrying(read, what, **kwargs)

    @staticmethod
    def _commit_of(change: Change) -> str | None:
        """The app commit's full SHA GitLab needs: the plan's, else the one an earlier record gave its git tag
        (a read of the whole audit log: done once per app, for the "running" record, and kept for the final one)."""
        ref = change.record.get("ref")
        return change.record.get("commit") or (audit.commit_of(change.app.name, ref) if ref else None)

    def _entry(self, change: Change, result: AppResult, lock, commit: str | None) -> dict[str, Any]:
        """One app's record: what changed and, for GitLab's deployment record, which commit and tag it was."""
        return {
            "command": self.guard.command, "reason": self.guard.reason, "env": self.guard.env,
            "context": self.target.context, "namespace": self.target.namespace, "app": change.app.name,
            "image": change.image_ref, "gitlab_project": change.app.gitlab_project, **change.record,
            "commit": commit,
            "old_revision": result.old_revision, "new_revision": result.new_revision, "result": result.result,
            "message": result.message, "timings": result.timings,
            "undone_to": self.undoer.made_live.get(change.app.release),  # the revision the undo of a failure made live
            "lock_broken_from": lock.taken_from.identity if lock.taken_from else None,
        }

    async def _record_in_gitlab(self, results: list[dict[str, Any]]) -> None:
        """Tell GitLab what was deployed while it answers; say how to catch up when it does not."""
        from manual_deploy.gitlab_sync import record_now

        notes = await asyncio.to_thread(lambda: record_now(self.config, self.audited, self.out, self._team()))
        for row in results:
            if row.get("app") in notes:
                row["gitlab"] = notes[row["app"]]

    def _team(self):
        """The env's records as GitLab's step reads and claims them: the cluster this run reached, if it still does."""
        from manual_deploy.record_queue import TeamEnv

        try:
            kube = self.kube_client()
        except Exception:  # noqa: BLE001 - no client: this machine's queue alone, as when the cluster is away
            kube = None
        return TeamEnv(self.guard.env, self.target.namespace, kube)


def confirm_env(env: str, needs_confirmation: bool, yes: bool, out, context: str, action: str = "deploy to") -> None:
    """prod-like envs: the engineer types the env name; no terminal and no --yes → refuse, never hang."""
    if not needs_confirmation or yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{action} {env} needs confirmation and there is no terminal to ask on", hint="re-run with --yes")
    out.info(f"About to {action} {env} ({context}). Type the environment name to continue:")
    try:
        answer = input("> ").strip()
    except EOFError:
        answer = ""
    if answer != env:
        raise Refused(f"confirmation did not match {env!r}; nothing was changed", hint="re-run and type the env name, or pass --yes")
