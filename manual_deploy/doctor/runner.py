"""How doctor runs its checks so it answers in seconds even when everything hangs.

A subprocess is bounded and, on timeout, killed with its whole process group (git's helpers hold
our pipes open); the probes run at once, each in a daemon thread, and whatever has not answered by
the deadline is reported as such and its processes killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from manual_deploy.doctor.report import FAIL, Finding
from manual_deploy.kube import error_line

CHECK_TIMEOUT_S = 5.0  # one subprocess or cluster request
DEADLINE_S = 8.0  # backstop for what no timeout covers (DNS, exec plugins); doctor never waits longer


@dataclass(frozen=True)
class Probe:
    """A check (or a few that share one network call) to run concurrently with the others."""

    name: str
    run: Callable[[], list[Finding]]
    hint: str | None = None  # for the line reported when it misses the deadline


_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


def run_bounded(argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an argument list; on timeout kill its whole process group (git's helpers hold our pipes open)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=dict(env) if env is not None else None, start_new_session=True)
    with _live_lock:
        _live.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise
    finally:
        with _live_lock:
            _live.discard(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def last_line(text: str | None) -> str:
    """A tool's last non-blank output line: where git, helm and ssh put the reason they failed."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_leftovers() -> None:
    """Processes of probes abandoned at the deadline (or on Ctrl-C) must not outlive doctor."""
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        _kill_group(proc)


def run_probes(probes: list[Probe], deadline_s: float = DEADLINE_S) -> dict[str, list[Finding]]:
    """Each probe in a daemon thread, so one that hangs past the deadline cannot keep doctor from exiting."""
    results: list[list[Finding] | None] = [None] * len(probes)

    def work(index: int, probe: Probe) -> None:
        try:
            results[index] = probe.run()
        except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
            results[index] = [Finding(probe.name, FAIL, f"check crashed: {error_line(exc)}", "re-run with -v and report it")]

    _import_probe_dependencies()
    threads = [threading.Thread(target=work, args=(i, p), daemon=True, name=f"doctor-{p.name}") for i, p in enumerate(probes)]
    end = time.monotonic() + deadline_s
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
    finally:
        _kill_leftovers()
    late = lambda p: [Finding(p.name, FAIL, f"no answer within {deadline_s:g} s", p.hint)]  # noqa: E731
    return {probe.name: (result if result is not None else late(probe)) for probe, result in zip(probes, results)}


def _import_probe_dependencies() -> None:
    """Import what the probes share before they run in parallel.

    Threads importing the same package at once (several cluster probes → kubernetes, registry
    probes → requests) can get a half-initialised module from Python's import deadlock breaker.
    """
    import requests  # noqa: F401
    from kubernetes import client, config  # noqa: F401

    client.VersionApi, client.AuthorizationV1Api  # noqa: B018 - kubernetes.client imports its API classes on first access
