"""`sandbox check`: will my config repo deploy? Every configured app to each env in turn, with the real helm.

Runs the real `manual-deploy apply` (one process per env, all apps at once, `--tag sandbox`) against the
sandbox and reads its JSON result, so every app × env gets one line: deployed, or the reason it would fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from manual_deploy_sandbox.rehearsal import DRILL_TAG

APPLY_TIMEOUT_S = 900  # one env, every app: helm's own --timeout (below) bounds each rollout
STOP_TIMEOUT_S = 330  # an interrupted apply's cleanup: stopping helm and a bounded rollback (≤ 300 s)


@dataclass(frozen=True)
class Row:
    env: str
    app: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.env:<8} {self.app:<24} {'deployed' if self.ok else 'FAILED'}  {self.detail}".rstrip()


def environment(ready: dict) -> dict[str, str]:
    """What `sandbox env` exports, for the apply processes."""
    return {**os.environ, "MANUAL_DEPLOY_CONFIG": ready["config"], "KUBECONFIG": ready["kubeconfig"],
            "MANUAL_DEPLOY_HELM": ready["helm"], "MANUAL_DEPLOY_STATE_DIR": ready["state_dir"],
            "MANUAL_DEPLOY_CACHE_DIR": ready["cache_dir"], "MANUAL_DEPLOY_SANDBOX_DIR": ready["dir"]}


def check_env(ready: dict, env: str, apps: list[str], *, grace: str, timeout: str, out) -> list[Row]:
    """One apply of every app to `env`; one row per app from its JSON result."""
    argv = [sys.executable, "-m", "manual_deploy", "-o", "json", "apply", "--env", env, "--tag", DRILL_TAG, "--yes",
            "--grace", grace, "--timeout", timeout, "--reason", "sandbox check", *(a for app in apps for a in ("--app", app))]
    out.step(f"{env}: apply of {len(apps)} apps with the real helm")
    try:
        proc = _run_apply(argv, environment(ready))
    except subprocess.TimeoutExpired:
        return [Row(env, app, False, f"apply did not end within {APPLY_TIMEOUT_S} s") for app in apps]
    try:
        data = json.loads(proc.stdout or "{}")
    except ValueError:
        data = {}
    results = {r.get("app"): r for r in data.get("results") or []}
    rows = []
    for app in apps:
        result = results.get(app)
        if result is None:  # refused before any app was tried (a missing image, the config, a lock)
            rows.append(Row(env, app, False, data.get("error") or _last_line(proc.stderr)))
        elif result.get("result") in ("deployed", "unchanged"):
            replicas = result.get("replicas")
            rows.append(Row(env, app, True, f"revision {result.get('new_revision')}, "
                                             + (f"replicas {replicas}" if replicas is not None else "replicas set by the chart")))
        else:
            rows.append(Row(env, app, False, result.get("message") or result.get("result") or "failed"))
    return rows


def _run_apply(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """One apply process, in a session of its own so that a signal reaches it once, from us: on Ctrl-C,
    SIGTERM or SIGHUP it gets the same signal and cleans up (rolls back, unlocks) before we stop too."""
    from manual_deploy import interrupts

    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=APPLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        except KeyboardInterrupt:
            proc.send_signal(interrupts.received())
            try:
                proc.communicate(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
