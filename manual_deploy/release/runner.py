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
from manual_deploy.durations import format_duration
from manual_deploy.errors import Interrupted, ManualDeployError, OperationFailed, Refused
from manual_deploy.helm import HelmDriver, Revision, find_helm, helm_error, network_failure
from manual_deploy.kube import Target, api_client
from manual_deploy.release.locks import LockSet
from manual_deploy.release.outcome import AppResult, Phases, combine
from manual_deploy.release.speed import HELM_HEAD_START_S
from manual_deploy.release.watch import lock_lost, stop, watch_helm

MAX_PARALLEL_APPS = 8
FINAL_CHECK_S = 30.0
RETRY_FIRST_S, RETRY_MAX_S = 2.0, 8.0  # backoff when the cluster does not answer: 2, 4, 8, 8 … s
UNKNOWN = object()  # the release could not be read


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
            self._audit(change, result, lock)
        return result

    async def _helm_under_watch(self, change: Change) -> Revision:
        """Start helm, watch every resource of the release while it waits, stop and undo on a failure,
        then check that every new pod runs the expected image. A signal stops helm and undoes what had
        started; a lock taken over stops helm and leaves the release to its new owner."""
        name = change.app.name
        try:
            revision, watch = await self._helm_with_retries(change)
            self._still_ours(change)
            try:
                await self._final_check(change, watch)
            except OperationFailed as exc:
                self.out.error(f"{name}: {exc.message}; rolling back")
                exc.message += f"; {await self.undo(change)}"
                raise
        except asyncio.CancelledError:
            if self.locks.lost(name) is None:
                self.out.warn(f"{name}: {interrupts.name()} received: stopping helm and undoing what had started")
                self.undone[name] = await self.undo_if_started(change)
            raise
        if not isinstance(revision, Revision):  # helm rollback reports nothing; upgrade reports the revision
            revision = await self.helm().current(change.app.release, self.target.namespace)
        if revision is None:
            raise OperationFailed(f"{name}: helm reported success but the release is gone")
        return revision

    async def _helm_with_retries(self, change: Change):
        """helm's operation under the watch; (its result, the watch). A network failure that left the
        release as it was is retried with backoff within --timeout; one after helm started changing it
        is undone as soon as the cluster answers again."""
        from manual_deploy.readiness.watch import ReleaseWatch

        helm, ns, name = self.helm(), self.target.namespace, change.app.name
        deadline = time.monotonic() + self.guard.timeout_s
        delay = RETRY_FIRST_S
        while True:
            operation = asyncio.create_task(change.start(helm))
            try:
                # helm first: while it renders and writes the release, the API server and helm have the CPU to
                # themselves; the watch's first look is due a second later anyway.
                await asyncio.wait({operation}, timeout=HELM_HEAD_START_S)
                watch = ReleaseWatch(self.kube_client(), ns, change.app.release,
                                     after_revision=change.old.number if change.old else None, grace_s=self.guard.grace_s)
                failure = await watch_helm(operation, watch, self.out, name, lost=lambda: self.locks.lost(name))
            except BaseException:
                await stop(operation)
                raise
            if failure is not None:
                raise await self._rollout_failed(change, failure)
            try:
                return operation.result(), watch
            except Exception as exc:  # noqa: BLE001 - pyhelm3 errors
                blip = network_failure(exc)
                if blip is None:
                    raise await self._helm_failed(change, exc, watch) from None
                current = await self._when_reachable(change, deadline, blip)
                if not self._changed(change, current) and time.monotonic() + delay < deadline:
                    self.out.warn(f"{name}: {blip} before anything changed; retrying in {delay:.0f} s")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                if not self._changed(change, current):
                    raise OperationFailed(f"{name}: helm {change.action} failed: {blip}; nothing was changed",
                                          hint=f"check the VPN and `manual-deploy doctor --env {self.guard.env}`, then `{change.rerun}`")
                back = await self.undo(change)
                raise OperationFailed(f"{name}: helm {change.action} failed midway: {blip}; once the cluster answered again: {back}",
                                      hint=f"check the VPN and `manual-deploy doctor --env {self.guard.env}`, then `{change.rerun}`")

    async def _rollout_failed(self, change: Change, failure) -> OperationFailed:
        from manual_deploy.readiness.advice import remedy

        name, ns = change.app.name, self.target.namespace
        self.out.error(f"{name}: rollout failed, stopping helm and rolling back")
        self.out.info(failure.report())
        back = await self.undo(change)
        # a pod's own words (the kubelet's, the scheduler's); any other kind's state (`Pending — …`)
        words = failure.message if failure.kind == "Pod" and failure.message else failure.summary
        state = f" ({words})" if words else ""
        fix = remedy(failure, ns)
        return OperationFailed(f"{name}: {failure.reason} in {failure.subject} for {format_duration(self.guard.grace_s)}{state}; "
                               f"{back}", hint=change.retry_hint if fix is None else f"{fix}; then `{change.rerun}`")

    async def _helm_failed(self, change: Change, exc: Exception, watch) -> OperationFailed:
        """helm gave up (its --timeout, or it was killed): say what it waited for; undo what it left half-done."""
        name = change.app.name
        current = await self._read_current(change)
        back = await self._describe_release(change)
        error = helm_error(exc, f"{name}: helm {change.action} failed ({back})")
        if current is not UNKNOWN and self._changed(change, current) and not self._helm_undid(change, current):
            error.message += f"; {await self.undo(change)}"  # helm died, or its own rollback failed too
        seen = watch.waited_for()
        if seen:
            error.message += f"\nnot ready when helm gave up:\n{_indent(seen)}"
        error.hint = (f"see what runs now: `manual-deploy status --env {self.guard.env} --app {name}`; "
                      f"fix the cause named above, or give it longer with --timeout, then try again")
        return error

    def _still_ours(self, change: Change) -> None:
        holder = self.locks.lost(change.app.name)
        if holder is not None:
            raise lock_lost(change.app.name, holder, self.guard.env)

    async def _when_reachable(self, change: Change, deadline: float, blip: str):
        """The release as the cluster has it, asked again (with backoff) until the cluster answers or the
        deadline passes; UNKNOWN then."""
        try:
            return await self.read_retrying(lambda: self.helm().current(change.app.release, self.target.namespace),
                                            change.app.name, deadline=deadline, blip=blip)
        except Exception:  # noqa: BLE001 - pyhelm3 errors: the cluster never answered, or answered something else
            return UNKNOWN

    async def read_retrying(self, read: Callable[[], Awaitable[Any]], what: str, *, deadline: float | None = None,
                            blip: str | None = None):
        """A read through helm, asked again with backoff within --timeout while the network fails (a VPN
        blip, a frozen apiserver); any other failure, or the last one, is raised."""
        deadline = deadline or time.monotonic() + self.guard.timeout_s
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

    async def _read_current(self, change: Change):
        try:
            return await self.helm().current(change.app.release, self.target.namespace)
        except Exception:  # noqa: BLE001 - only decides whether to undo
            return UNKNOWN

    @staticmethod
    def _changed(change: Change, current) -> bool:
        """Whether the release differs from what the plan saw (UNKNOWN: assume it does)."""
        if current is UNKNOWN:
            return True
        old = change.old
        if current is None or old is None:
            return (current is None) != (old is None)
        return (current.number, current.status) != (old.number, old.status)

    @staticmethod
    def _helm_undid(change: Change, current) -> bool:
        """helm's own atomic undo brought the old revision back (a new `Rollback to N`, deployed)."""
        old = change.old.number if change.old else None
        return bool(current and old and current.number > old and current.status == "deployed"
                    and current.description.lower().startswith("rollback") and change.undo_to is None)

    async def undo_if_started(self, change: Change) -> str:
        """After a signal: undo what this run had started, or say that nothing had changed."""
        current = await self._read_current(change)
        if current is not UNKNOWN and not self._changed(change, current):
            return "nothing had changed"
        return await self.undo(change)

    async def _final_check(self, change: Change, watch) -> None:
        """helm says ready; prove every resource is ready and every new pod runs the expected image."""
        deadline = time.monotonic() + FINAL_CHECK_S
        while True:
            self._still_ours(change)
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

    async def undo(self, change: Change) -> str:
        """Make what ran before live again; the tail of the failure's message. Never raises: the failure
        that made us undo stays the message, with the undo's own failure and where to look added to it."""
        try:
            return await self._undo(change)
        except Exception as exc:  # noqa: BLE001 - pyhelm3 errors: cluster unreachable, auth, timeout
            why = helm_error(exc, "rolling back failed too").message
            return f"{why}; see what runs now: `manual-deploy status --env {self.guard.env} --app {change.app.name}`"

    async def _undo(self, change: Change) -> str:
        helm, ns, release = self.helm(), self.target.namespace, change.app.release
        current = await helm.current(release, ns)
        old = change.old.number if change.old else None
        if self._helm_undid(change, current):
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
