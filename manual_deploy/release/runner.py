"""The guarded release sequence, written once: every verb that changes a release runs through it.

    [lock early, when nobody is asked] plan → confirm → lock all → notify start →
    per app: before-steps → helm under watch → final image check → after-steps
             (undo on failure) → unlock → audit
    → record in GitLab (when it answers) → notify end → one outcome for all apps

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

from manual_deploy import audit
from manual_deploy.config import ResolvedApp
from manual_deploy.durations import format_duration
from manual_deploy.errors import ManualDeployError, OperationFailed, Refused
from manual_deploy.helm import HelmDriver, Revision, find_helm, helm_error
from manual_deploy.kube import Target, api_client
from manual_deploy.release.locks import LockSet
from manual_deploy.release.outcome import AppResult, Phases, combine
from manual_deploy.release.speed import HELM_HEAD_START_S
from manual_deploy.release.watch import watch_helm

MAX_PARALLEL_APPS = 8
FINAL_CHECK_S = 30.0


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
        self.config, self.guard, self.target, self.out, self.phases = config, guard, target, out, phases
        self.locks = LockSet(self.kube_client, target.namespace, reason=guard.reason, duration_s=int(guard.timeout_s) + 300,
                             break_lock=guard.break_lock, out=out)
        self._helm: HelmDriver | None = None
        self._kube = None
        self._kube_guard = threading.Lock()
        self.audited: list[dict[str, Any]] = []  # this run's audit records, for GitLab

    # shared clients ------------------------------------------------------------------------------

    def helm(self) -> HelmDriver:
        if self._helm is None:
            self._helm = HelmDriver(find_helm(self.config.helm.executable), kubeconfig=self.guard.kubeconfig,
                                    context=self.target.context, timeout_s=self.guard.timeout_s)
            self.out.debug(f"helm {self._helm.version} at {self._helm.executable}")
        return self._helm

    def kube_client(self):
        with self._kube_guard:  # the lock threads and a plan's drift check may ask at the same time
            if self._kube is None:
                self._kube = api_client(self.target)
            return self._kube

    # the sequence --------------------------------------------------------------------------------

    async def run(self, apps: list[str], plan: Callable[[], Awaitable[list[Change]]]) -> list[dict[str, Any]]:
        """Plan, confirm, lock, change, record; returns every app's result or raises one combined error.

        Nobody to ask (--yes, or an env without confirm): the locks are taken while the plan reads the
        releases. Someone to ask: only after they said yes, so a prompt left open blocks nobody.
        """
        prompt = self.guard.confirm and not self.guard.yes
        locking = None if prompt else asyncio.create_task(self.locks.take(apps))
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
                locking = asyncio.create_task(self.locks.take([c.app.name for c in changes if not c.unchanged]))
            with self.phases("lock"):
                await locking
            if not prompt:
                with self.phases("confirm"):
                    self.confirm(changes)  # nothing to ask: --yes, or an env without confirm
            await self.locks.release([c.app.name for c in changes if c.unchanged])
            return await self._change_all(changes)
        finally:
            if locking is not None:
                await asyncio.gather(locking, return_exceptions=True)
            await self.locks.release()

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
        semaphore = asyncio.Semaphore(MAX_PARALLEL_APPS)

        async def bounded(change: Change) -> AppResult:
            async with semaphore:
                return await self._change_one(change)

        outcomes = await asyncio.gather(*(bounded(c) for c in changes), return_exceptions=True)
        results, error = combine(changes, outcomes, self.guard.env)
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
        phases = Phases(self.out, prefix=f"[{name}] ")
        lock = self.locks.get(name)
        try:
            for step_name, step in change.before:
                with phases(step_name):
                    await step()
            with phases(f"{change.action}+verify"):
                revision = await self._helm_under_watch(change)
            result.new_revision = revision.number
            for step_name, step in change.after:
                with phases(step_name):
                    await step(revision)
            result.result = "deployed" if change.action == "upgrade" else "rolled back"
            result.message = f"revision {revision.number} is live with {change.image_ref}"
        except ManualDeployError as exc:
            result.message = exc.message
            raise
        finally:
            await asyncio.to_thread(lock.release)
            result.timings = {**self.phases.timings, **phases.timings}
            self._audit(change, result, lock)
        return result

    async def _helm_under_watch(self, change: Change) -> Revision:
        """Start helm, watch every resource of the release while it waits, stop and undo on a failure,
        then check that every new pod runs the expected image."""
        from manual_deploy.readiness.advice import remedy
        from manual_deploy.readiness.watch import ReleaseWatch

        helm, ns, name = self.helm(), self.target.namespace, change.app.name
        operation = asyncio.create_task(change.start(helm))
        # helm first: while it renders and writes the release, the API server and helm have the CPU to
        # themselves; the watch's first look is due a second later anyway.
        await asyncio.wait({operation}, timeout=HELM_HEAD_START_S)
        watch = await asyncio.to_thread(ReleaseWatch, self.kube_client(), ns, change.app.release,
                                        after_revision=change.old.number if change.old else None, grace_s=self.guard.grace_s)
        failure = await watch_helm(operation, watch, self.out, name)
        if failure is not None:
            self.out.error(f"{name}: rollout failed, stopping helm and rolling back")
            self.out.info(failure.report())
            back = await self.undo(change)
            # a pod's own words (the kubelet's, the scheduler's); any other kind's state (`Pending — …`)
            words = failure.message if failure.kind == "Pod" and failure.message else failure.summary
            state = f" ({words})" if words else ""
            fix = remedy(failure, ns)
            raise OperationFailed(f"{name}: {failure.reason} in {failure.subject} for {format_duration(self.guard.grace_s)}{state}; "
                                  f"{back}", hint=change.retry_hint if fix is None else f"{fix}; then `{change.rerun}`")
        try:
            revision = operation.result()
        except Exception as exc:
            back = await self._describe_release(change)
            error = helm_error(exc, f"{name}: helm {change.action} failed ({back})")
            undone = await self.undo(change, left_by_helm=True)  # helm's own rollback may have failed too
            if undone:
                error.message += f"; {undone}"
            seen = watch.waited_for()
            if seen:
                error.message += f"\nnot ready when helm gave up:\n{_indent(seen)}"
            error.hint = (f"see what runs now: `manual-deploy status --env {self.guard.env} --app {name}`; "
                          f"fix the cause named above, or give it longer with --timeout, then try again")
            raise error from None
        try:
            await self._final_check(change, watch)
        except OperationFailed as exc:
            self.out.error(f"{name}: {exc.message}; rolling back")
            exc.message += f"; {await self.undo(change)}"
            raise
        if not isinstance(revision, Revision):  # helm rollback reports nothing; upgrade reports the revision
            revision = await helm.current(change.app.release, ns)
        if revision is None:
            raise OperationFailed(f"{name}: helm reported success but the release is gone")
        return revision

    async def _final_check(self, change: Change, watch) -> None:
        """helm says ready; prove every resource is ready and every new pod runs the expected image."""
        deadline = time.monotonic() + FINAL_CHECK_S
        while True:
            look = await asyncio.to_thread(watch.check)
            if look.all_ready or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        name = change.app.name
        status = f"see what runs now: `manual-deploy status --env {self.guard.env} --app {name}`"
        if not look.all_ready:
            raise OperationFailed(f"{name}: helm reported success but it is still {watch.progress()}", hint=status)
        wrong = watch.images_live(change.expected_image)
        if wrong:
            raise OperationFailed(f"{name}: pods not running {change.expected_image}: {'; '.join(wrong)}", hint=status)
        rolled = "; ".join(f"deployment {s.name} {s.summary}" for s in look.states if s.kind == "Deployment")
        self.out.success(f"{name}: {rolled or watch.progress()}, all on {change.expected_image}")

    async def undo(self, change: Change, left_by_helm: bool = False) -> str:
        """Make what ran before live again; the tail of the failure's message. Never raises: the failure
        that made us undo stays the message, with the undo's own failure and where to look added to it.
        `left_by_helm`: helm itself failed; undo only what it left unfinished ("" when nothing)."""
        try:
            return await self._undo(change, left_by_helm)
        except Exception as exc:  # noqa: BLE001 - pyhelm3 errors: cluster unreachable, auth, timeout
            why = helm_error(exc, "rolling back failed too").message
            return f"{why}; see what runs now: `manual-deploy status --env {self.guard.env} --app {change.app.name}`"

    async def _undo(self, change: Change, left_by_helm: bool = False) -> str:
        helm, ns, release = self.helm(), self.target.namespace, change.app.release
        current = await helm.current(release, ns)
        old = change.old.number if change.old else None
        # what a helm that died, or whose own rollback or uninstall failed, leaves as the newest revision
        unfinished = ("failed", "pending-install", "pending-upgrade", "pending-rollback", "uninstalling")
        if left_by_helm and not (current and (old is None or current.number > old) and current.status in unfinished):
            return ""  # helm failed before it changed the release, or it cleaned up after itself
        if (current and old and current.number > old and current.status == "deployed"
                and current.description.lower().startswith("rollback") and change.undo_to is None):
            return f"rolled back: revision {current.number} is live again with {change.old_image}"  # helm's own atomic undo
        if old is None:
            await helm.uninstall(release, ns, timeout_s=120)
            return "the first install was removed again; nothing of it is left"
        previous = change.undo_to or await self.last_good(release, before=old + 1) or old  # never the revision this run made
        await helm.rollback(release, ns, previous, timeout_s=min(self.guard.timeout_s, 300))
        now = await helm.current(release, ns)
        return f"rolled back to revision {previous}: revision {now.number if now else '?'} is live again with {change.old_image}"

    async def last_good(self, release: str, before: int | None = None) -> int | None:
        history = await self.helm().history(release, self.target.namespace)
        good = [r.number for r in history if r.status in ("deployed", "superseded") and (before is None or r.number < before)]
        return max(good) if good else None

    async def _describe_release(self, change: Change) -> str:
        try:
            current = await self.helm().current(change.app.release, self.target.namespace)
        except Exception:  # noqa: BLE001 - only a description of the failure
            return "release state unknown"
        if current is None:
            return "nothing installed"
        return f"release now at revision {current.number}, {current.status}: {current.description}"

    def _audit(self, change: Change, result: AppResult, lock) -> None:
        """One line per app: what changed and, for GitLab's deployment record, which commit and tag it was."""
        ref = change.record.get("ref")
        entry = {
            "command": self.guard.command, "reason": self.guard.reason, "env": self.guard.env,
            "context": self.target.context, "namespace": self.target.namespace, "app": change.app.name,
            "image": change.image_ref, "gitlab_project": change.app.gitlab_project, **change.record,
            "commit": change.record.get("commit") or (audit.commit_of(change.app.name, ref) if ref else None),
            "old_revision": result.old_revision, "new_revision": result.new_revision, "result": result.result,
            "message": result.message, "timings": result.timings,
            "lock_broken_from": lock.broken.identity if lock.broken else None,
        }
        self.audited.append(audit.record(entry))

    async def _record_in_gitlab(self, results: list[dict[str, Any]]) -> None:
        """Tell GitLab what was deployed while it answers; say how to catch up when it does not."""
        from manual_deploy.gitlab_sync import record_now

        notes = await asyncio.to_thread(record_now, self.config, self.audited, self.out)
        for row in results:
            if row.get("app") in notes:
                row["gitlab"] = notes[row["app"]]


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


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
