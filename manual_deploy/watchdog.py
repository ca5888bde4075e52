"""helm never outlives manual-deploy by more than a few seconds, however manual-deploy ends.

helm runs in a session of its own, so a closed terminal's SIGHUP reaches only manual-deploy, which
decides (stop helm, roll back, unlock). But a SIGKILLed manual-deploy decides nothing, and macOS has
no parent-death signal. So the first helm a run starts also starts one small watchdog process, in its
own session too, reading a pipe from us: `+PID` for each helm started, `-PID` once it is reaped. When
the pipe closes — we exited, or died — it sends every helm still listed SIGTERM (helm cancels and rolls
back on it), then SIGKILL after STOP_GRACE_S. The same on Linux and on macOS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

STOP_GRACE_S = 5.0

# A script on its own (python -I -S, nothing imported): it must run when our package cannot be imported,
# so its `alive` repeats manual_deploy.processes.pid_alive on purpose.
_WATCHDOG = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
grace = float(sys.argv[1])
live = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+" and line[1:].isdigit():
        live.add(int(line[1:]))
    elif line[:1] == "-" and line[1:].isdigit():
        live.discard(int(line[1:]))

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True

def send(pid, sig):
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, sig)
            return
        except (ProcessLookupError, PermissionError):
            continue

for pid in live:
    send(pid, signal.SIGTERM)
end = time.monotonic() + grace
while time.monotonic() < end and any(alive(pid) for pid in live):
    time.sleep(0.1)
for pid in live:
    if alive(pid):
        send(pid, signal.SIGKILL)
"""

_lock = threading.Lock()
_proc: subprocess.Popen | None = None
_owner_pid: int | None = None


def _pipe() -> subprocess.Popen | None:
    """The watchdog of this process, started on first use; None if it cannot be started (then helm
    is only stopped by our own cleanup, as before)."""
    global _proc, _owner_pid
    if _proc is not None and _owner_pid == os.getpid() and _proc.poll() is None:
        return _proc
    try:
        _proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(STOP_GRACE_S)],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True, close_fds=True, env={})  # needs nothing, holds no secret
        _owner_pid = os.getpid()
    except OSError:
        _proc = None
    return _proc


def _send(line: str) -> None:
    with _lock:
        proc = _pipe()
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line.encode())
            proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass


def guard(pid: int) -> None:
    """From now on, `pid` (a helm process, leader of its own session) is stopped if we die."""
    _send(f"+{pid}\n")


def release(pid: int) -> None:
    """`pid` has ended and was reaped: forget it (its number may be reused)."""
    _send(f"-{pid}\n")
