"""helm under watch: poll the release's resources while helm waits, stop helm on a failure past grace.

helm's own --wait cannot tell a crash-looping pod from a slow one (helm 3 waits out --timeout); the
watch can. Whatever happens (also Ctrl-C), helm is not left running.
"""

from __future__ import annotations

import asyncio
import time

from manual_deploy.durations import format_duration
from manual_deploy.kube import error_line

CHECK_EVERY_S = 1.0
PROGRESS_EVERY_S = 9.0  # a progress line at least every 10 s


async def watch_helm(task: asyncio.Task, watch, out, label: str, lost=lambda: None):
    """Poll `watch.check()` while `task` (helm) runs; return the failure that stopped helm, or None.

    Every progress line names what helm is still waiting for and why (`watch.progress()`). When
    `lost()` names who took the deploy lock from us, helm is stopped at once and that is raised."""
    started = last_line = time.monotonic()
    failure = None
    message = "waiting for helm"
    unreadable = False
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=CHECK_EVERY_S)
            if done:
                break
            holder = lost()
            if holder is not None:
                raise lock_lost(label, holder)
            try:
                failure = (await asyncio.to_thread(watch.check)).failure
                message, problem = watch.progress(), watch.unreadable()
            except Exception as exc:  # noqa: BLE001 - the check only speeds up a failure; helm's --wait still decides
                message, problem = "waiting for helm (release unreadable)", f"cannot read the release ({error_line(exc)})"
            if problem and not unreadable:
                out.warn(f"  {label}: {problem}; helm's own wait still applies")
            unreadable = bool(problem)
            if failure is not None:
                break
            if time.monotonic() - last_line >= PROGRESS_EVERY_S:
                last_line = time.monotonic()
                out.info(f"  {label}: {message} ({format_duration(last_line - started)} elapsed)")
    except BaseException:
        await stop(task)
        raise
    if failure is not None:
        await stop(task)
    return failure


async def stop(task: asyncio.Task) -> None:
    """Cancel helm's task and wait until its process is gone."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def lock_lost(app: str, holder, env: str | None = None):
    """The refusal of a run whose lock was taken over: it stops, it never fights."""
    from manual_deploy.errors import Refused

    where = f" --env {env}" if env else ""
    return Refused(f"{app}: the deploy lock was taken over by {holder.describe()}; helm was stopped and that run "
                   "now owns the release (nothing was rolled back by this run)",
                   hint=f"talk to {holder.user_host}; see what runs: `manual-deploy status{where} --app {app}`",
                   details={"lock_holder": holder.identity})
