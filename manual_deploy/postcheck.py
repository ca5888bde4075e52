"""The post-deploy check: what GitLab's Integration stage did, as a command the team chooses.

Run as an argument list (never a shell), with the deploy's facts in MD_* variables, bounded by a
timeout and visibly alive while it runs. Its output tail is what the engineer needs on failure.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
import time
from typing import Awaitable, Callable

from manual_deploy.durations import format_duration
from manual_deploy.errors import OperationFailed, UsageError

TAIL_LINES = 20


def parse_post_check(text: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"invalid --post-check {text!r}: {exc}",
                         hint='quote it as one shell word: --post-check "CMD ARGS", with balanced quotes inside') from None
    if not argv:
        raise UsageError("--post-check needs a command", hint='pass --post-check "CMD ARGS", or leave it out')
    return argv


def run_post_check(argv: list[str], *, env: str, app: str, image: str, namespace: str, timeout_s: float, out) -> None:
    """Run the check; raise OperationFailed with its output tail when it fails or overruns."""
    extra = {"MD_ENV": env, "MD_APP": app, "MD_IMAGE": image, "MD_NAMESPACE": namespace}
    out.step(f"post-check: {shlex.join(argv)}")
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **extra})
        except OSError as exc:
            raise OperationFailed(f"post-check {argv[0]!r} could not start: {exc.strerror}") from None
        started = last = time.monotonic()
        try:
            while proc.poll() is None:
                if time.monotonic() - started > timeout_s:
                    proc.kill()
                    proc.wait()
                    raise OperationFailed(f"post-check did not finish within {format_duration(timeout_s)}{_tail(log)}")
                if time.monotonic() - last >= 9:
                    last = time.monotonic()
                    out.info(f"  post-check still running ({format_duration(last - started)})")
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise OperationFailed(f"post-check failed with exit code {proc.returncode}{_tail(log)}")
    out.success(f"post-check passed ({format_duration(time.monotonic() - started)})")


async def check_deployed(argv: list[str], *, env: str, app: str, image: str, namespace: str, timeout_s: float, out,
                         revision: int, undo: Callable[[], Awaitable[str]] | None) -> None:
    """The post-check as a deploy's after-step. On failure the message says what is live now: the new
    revision (and how to roll it back), or, when `undo` is given (--rollback-on-check-failure), what the
    undo made live again."""
    try:
        await asyncio.to_thread(run_post_check, argv, env=env, app=app, image=image, namespace=namespace,
                                timeout_s=timeout_s, out=out)
    except OperationFailed as exc:
        if undo is not None:
            back = await undo()
            raise OperationFailed(f"{app}: revision {revision} deployed but {exc.message}; {back}") from None
        rollback = f"manual-deploy rollback --env {env} --app {app}"
        raise OperationFailed(
            f"{app}: revision {revision} is live but {exc.message}",
            hint=f"if the new version is at fault: `{rollback}` (or re-run apply with --rollback-on-check-failure)",
        ) from None


def _tail(log) -> str:
    log.seek(0)
    lines = log.read().decode(errors="replace").rstrip("\n").splitlines()[-TAIL_LINES:]
    return ("; last output:\n" + "\n".join(f"    {line}" for line in lines)) if lines else ""
