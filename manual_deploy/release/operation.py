"""helm under watch: one app's helm operation, the watch of its release, and what ends it.

The operation either proves itself (every resource ready, every new pod on the expected image) or is
stopped and undone: a failing state past --grace, helm giving up, a signal, a network failure after
helm started changing the release; a lock taken over stops helm and leaves the release to its new
owner; a network failure before anything changed is retried within --timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from manual_deploy import interrupts
from manual_deploy.durations import format_duration
from manual_deploy.errors import OperationFailed
from manual_deploy.helm import Revision, helm_error, network_failure
from manual_deploy.release.speed import HELM_HEAD_START_S
from manual_deploy.release.undo import RETRY_FIRST_S, RETRY_MAX_S, UNKNOWN
from manual_deploy.release.watch import PROGRESS_EVERY_S, lock_lost, stop, watch_helm

if TYPE_CHECKING:
    from manual_deploy.readiness.resource_state import Failure
    from manual_deploy.release.runner import Change, ReleaseTransaction

FINAL_CHECK_S = 30.0


class WatchedHelm:
    """Runs one Change's helm operation for a ReleaseTransaction (its clients, locks, undo and output)."""

    def __init__(self, tx: "ReleaseTransaction"):
        self.tx = tx

    async def run(self, change: Change) -> Revision:
        """Start helm, watch every resource of the release while it waits, stop and undo on a failure,
        then check that every new pod runs the expected image. A signal stops helm and undoes what had
        started; a lock taken over stops helm and leaves the release to its new owner."""
        name = change.app.name
        try:
            revision, watch = await self._helm_with_retries(change)
            self._still_ours(change)
            try:
                failure = await self.final_check(change, watch)
            except OperationFailed as exc:
                self.tx.out.error(f"{name}: {exc.message}; rolling back")
                exc.message += f"; {await self.tx.undo(change)}"
                raise
            if failure is not None:  # the same path as a failure found while helm waited: remedy, then undo
                raise await self._rollout_failed(change, failure, helm_done=True)
        except asyncio.CancelledError:
            if self.tx.locks.lost(name) is None:
                self.tx.out.warn(f"{name}: {interrupts.name()} received: stopping helm and undoing what had started")
                self.tx.undone[name] = await self.tx.undoer.undo_if_started(change)
            raise
        if not isinstance(revision, Revision):  # helm rollback reports nothing; upgrade reports the revision
            revision = await self.tx.helm().current(change.app.release, self.tx.target.namespace)
        if revision is None:
            raise OperationFailed(f"{name}: helm reported success but the release is gone")
        return revision

    async def _helm_with_retries(self, change: Change):
        """helm's operation under the watch; (its result, the watch). A network failure that left the
        release as it was is retried with backoff within --timeout; one after helm started changing it
        is undone as soon as the cluster answers again."""
        from manual_deploy.readiness.release_watch import ReleaseWatch

        helm, ns, name = self.tx.helm(), self.tx.target.namespace, change.app.name
        deadline = time.monotonic() + self.tx.guard.timeout_s
        delay = RETRY_FIRST_S
        while True:
            operation = asyncio.create_task(change.start(helm))
            try:
                # helm first: while it renders and writes the release, the API server and helm have the CPU to
                # themselves; the watch's first look is due a second later anyway.
                await asyncio.wait({operation}, timeout=HELM_HEAD_START_S)
                watch = ReleaseWatch(self.tx.kube_client(), ns, change.app.release,
                                     after_revision=change.old.number if change.old else None, grace_s=self.tx.guard.grace_s)
                failure = await watch_helm(operation, watch, self.tx.out, name, lost=lambda: self.tx.locks.lost(name))
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
                current = await self.tx.undoer.when_reachable(change, deadline, blip)
                if not self.tx.undoer.changed(change, current) and time.monotonic() + delay < deadline:
                    self.tx.out.warn(f"{name}: {blip} before anything changed; retrying in {delay:.0f} s")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                if not self.tx.undoer.changed(change, current):
                    raise OperationFailed(f"{name}: helm {change.action} failed: {blip}; nothing was changed",
                                          hint=f"check the VPN and `manual-deploy doctor --env {self.tx.guard.env}`, then `{change.rerun}`")
                back = await self.tx.undo(change)
                raise OperationFailed(f"{name}: helm {change.action} failed midway: {blip}; once the cluster answered again: {back}",
                                      hint=f"check the VPN and `manual-deploy doctor --env {self.tx.guard.env}`, then `{change.rerun}`")

    async def _rollout_failed(self, change: Change, failure, *, helm_done: bool = False) -> OperationFailed:
        """Say what failed and its evidence, undo the change, and name the fix (the failing kind's remedy)."""
        from manual_deploy.readiness.advice import remedy

        name, ns = change.app.name, self.tx.target.namespace
        stopping = " after helm reported success; rolling back" if helm_done else ", stopping helm and rolling back"
        self.tx.out.error(f"{name}: rollout failed{stopping}")
        self.tx.out.info(failure.report())
        back = await self.tx.undo(change)
        # a pod's own words (the kubelet's, the scheduler's); any other kind's state (`Pending — …`)
        words = failure.message if failure.kind == "Pod" and failure.message else failure.summary
        state = f" ({words})" if words else ""
        fix = remedy(failure, ns)
        when = "after helm reported success" if helm_done else f"for {format_duration(self.tx.guard.grace_s)}"
        return OperationFailed(f"{name}: {failure.reason} in {failure.subject} {when}{state}; {back}",
                               hint=change.retry_hint if fix is None else f"{fix}; then `{change.rerun}`")

    async def _helm_failed(self, change: Change, exc: Exception, watch) -> OperationFailed:
        """helm gave up (its --timeout, or it was killed): say what it waited for; undo what it left half-done."""
        name = change.app.name
        current = await self.tx.undoer.read_current(change)
        back = await self.tx.undoer.describe(change)
        error = helm_error(exc, f"{name}: helm {change.action} failed ({back})")
        if current is not UNKNOWN and self.tx.undoer.changed(change, current) and not self.tx.undoer.helm_undid(change, current):
            error.message += f"; {await self.tx.undo(change)}"  # helm died, or its own rollback failed too
        seen = watch.waited_for()
        if seen:
            error.message += f"\nnot ready when helm gave up:\n{_indent(seen)}"
        error.hint = (f"see what runs now: `manual-deploy status --env {self.tx.guard.env} --app {name}`; "
                      f"fix the cause named above, or give it longer with --timeout, then try again")
        return error

    def _still_ours(self, change: Change) -> None:
        holder = self.tx.locks.lost(change.app.name)
        if holder is not None:
            raise lock_lost(change.app.name, holder, self.tx.guard.env)

    async def final_check(self, change: Change, watch) -> Failure | None:
        """helm says ready; prove every resource is ready and every new pod runs the expected image.

        A failing state found here is returned (the Failure), to go the way of one found while helm
        waited; what may settle later (an Ingress's address: helm does not wait for it either) is a
        warning; anything else still not ready is an OperationFailed."""
        name = change.app.name
        started = last_line = time.monotonic()
        while True:
            self._still_ours(change)
            look = await asyncio.to_thread(watch.check)
            if look.all_ready or look.failure is not None or time.monotonic() > started + FINAL_CHECK_S:
                break
            if time.monotonic() - last_line >= PROGRESS_EVERY_S:  # what it still waits for, as while helm waited
                last_line = time.monotonic()
                self.tx.out.info(f"  {name}: {watch.progress()} ({format_duration(last_line - started)} after helm)")
            await asyncio.sleep(0.5)
        status = f"see what runs now: `manual-deploy status --env {self.tx.guard.env} --app {name}`"
        if not look.all_ready:
            failure = look.failure or watch.failing_now()
            if failure is not None:
                return failure
            self._settling(change, look, watch, status)
        wrong = watch.pods_not_running(change.expected_image)
        if wrong:
            raise OperationFailed(f"{name}: pods not running {change.expected_image}: {'; '.join(wrong)}", hint=status)
        rolled = "; ".join(f"deployment {s.name} {s.summary}" for s in look.states if s.kind == "Deployment")
        self.tx.out.success(f"{name}: {rolled or watch.progress()}, all on {change.expected_image}")
        return None

    def _settling(self, change: Change, look, watch, status: str) -> None:
        """Warn of what may still settle after the deploy; refuse when anything else is not ready."""
        name, ns = change.app.name, self.tx.target.namespace
        settling = watch.settling()
        if look.revision is None or any(not s.ready and s not in settling for s in look.states):
            raise OperationFailed(f"{name}: helm reported success but it is still {watch.progress()}", hint=status)
        for found in settling:
            self.tx.out.warn(f"{name}: {found.label}: {found.summary}, not waited for (helm does not wait for it "
                             f"either); check it later: `kubectl -n {ns} describe {found.kind.lower()} {found.name}`")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
