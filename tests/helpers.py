"""Small assertions helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path


def tags(repo_path: Path) -> dict[str, str]:
    """{tag name: commit it peels to} in a local repo or bare remote."""
    from manual_deploy_sandbox.gitrepos import git

    out = git(repo_path, "for-each-ref", "refs/tags/", "--format=%(refname:strip=2) %(*objectname) %(objectname)")
    result = {}
    for line in out.splitlines():
        name, peeled, obj = line.split(" ")
        result[name] = peeled or obj
    return result


def interrupt_when(args: list[str], ready, *, settle: float, before_signal=None, timeout: float = 60) -> tuple[int, str, str]:
    """Run `manual-deploy ARGS` as a real process, SIGINT it once `ready()` holds (+ `settle` s).

    The only way to see what a user sees on Ctrl-C. Bounded in time; the process never outlives the call.
    """
    import signal
    import subprocess
    import sys
    import time

    exe = Path(sys.executable).parent / "manual-deploy"
    proc = subprocess.Popen([str(exe), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not ready():
            time.sleep(0.1)
        time.sleep(settle)
        if before_signal is not None:
            before_signal()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode, out, err


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll (bounded) until `predicate()` is truthy; returns its value or raises naming `what`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(interval)
