"""A deploy bed for killing deploys: the emulated apiserver in a process of its own, so it can be frozen.

Everything is real (helm, the registry, git, the manual-deploy processes and the signals sent to them)
except the kube-apiserver, the one stand-in; here it runs as `python -m manual_deploy_sandbox.kube`
over HTTPS, so SIGSTOP can freeze it the way a dropped VPN freezes a real one (TCP connects, TLS never
answers). Failures are injected over its `/_emulator/failures` control path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bed import ROOT, clean_env, write_bed_config
from helpers import wait_until

NS = "prod-environment"
TOKEN = "crash-bed-token-0123456789"
MANUAL_DEPLOY = str(Path(sys.executable).parent / "manual-deploy")


@dataclass
class Run:
    """A manual-deploy process started by the bed; `finish()` reaps it (bounded)."""

    proc: subprocess.Popen
    out: str = ""
    err: str = ""

    def finish(self, timeout: float = 120) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.communicate(timeout=10)
        return self.proc.returncode

    def signal(self, signum: int, *, group: bool = False) -> None:
        (os.killpg if group else os.kill)(self.proc.pid, signum)


@dataclass
class CrashBed:
    tmp: Path
    config: Path
    kubeconfig: Path
    url: str
    ca: Path
    kube_pid: int
    helm: Path
    registry_url: str
    runs: list[Run] = field(default_factory=list)

    def publish(self, tag: str, app: str = "ingest-core") -> str:
        """An image `app:tag` in the registry, as quay's build would push it; its reference as the chart gets it."""
        from manual_deploy_sandbox.registry import publish_image

        digest = publish_image(self.registry_url, f"ebi-ait/{app}", tag)
        return f"{self.registry_url.split('://', 1)[1]}/ebi-ait/{app}:{tag}@{digest}"

    # --- the engineers -------------------------------------------------------------------------------

    def env(self, user: str = "alice") -> dict[str, str]:
        """A user's own machine: HOME, state and cache directories of their own, their login name."""
        home = self.tmp / user
        return {**clean_env(), "HOME": str(home), "USER": user, "LOGNAME": user, "KUBECONFIG": str(self.kubeconfig),
                "MANUAL_DEPLOY_STATE_DIR": str(home / "state"), "MANUAL_DEPLOY_CACHE_DIR": str(home / "cache")}

    def start(self, *args: str, user: str = "alice", background: bool = False) -> Run:
        """`manual-deploy --config … ARGS` in a process group of its own (a terminal's job), stdin closed.
        `background`: started as a shell's `cmd &` starts it, with SIGINT ignored."""
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None
        proc = subprocess.Popen([MANUAL_DEPLOY, "--config", str(self.config), *args], env=self.env(user),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=ignore)
        run = Run(proc)
        self.runs.append(run)
        return run

    def run(self, *args: str, user: str = "alice", timeout: float = 180) -> Run:
        run = self.start(*args, user=user)
        run.finish(timeout)
        return run

    def audit(self, user: str = "alice") -> list[dict]:
        log = self.tmp / user / "state" / "audit.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    # --- the cluster ---------------------------------------------------------------------------------

    def api(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context="ingest-eks-prod", persist_config=False)

    def team_records(self, app: str = "ingest-core") -> list[dict]:
        """The app's records in the cluster (deploy_records.py's ConfigMap), oldest first."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from manual_deploy import deploy_records

        try:
            found = client.CoreV1Api(self.api()).read_namespaced_config_map(deploy_records.configmap_name(app), NS)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return json.loads(found.data[deploy_records.DATA_KEY])

    def leases(self) -> list:
        from kubernetes import client

        return client.CoordinationV1Api(self.api()).list_namespaced_lease(NS).items

    def running_image(self, app: str = "ingest-core") -> str:
        from kubernetes import client

        deployment = client.AppsV1Api(self.api()).read_namespaced_deployment(app, NS)
        return deployment.spec.template.spec.containers[0].image

    def history(self, release: str = "ingest-core") -> list[dict]:
        proc = subprocess.run([str(self.helm), "history", release, "-n", NS, "--kube-context", "ingest-eks-prod",
                               "--kubeconfig", str(self.kubeconfig), "-o", "json"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"helm history failed: {proc.stderr}")
        return json.loads(proc.stdout)

    def _control(self, method: str, path: str, **kwargs):
        import requests

        with requests.Session() as session:
            session.trust_env, session.verify = False, str(self.ca)
            answer = session.request(method, f"{self.url}/_emulator/{path}", timeout=10, **kwargs)
            answer.raise_for_status()
            return answer.json()

    def fail(self, image: str, mode: str) -> None:
        self._control("POST", "failures", json={"image": image, "mode": mode})

    def requests(self) -> list[dict]:
        """Every request the apiserver got (method, path, …), oldest first."""
        return self._control("GET", "requests")["requests"]

    @contextlib.contextmanager
    def frozen(self, seconds: float):
        """The apiserver stopped (SIGSTOP) for `seconds` after the block, then thawed whatever happens."""
        os.kill(self.kube_pid, signal.SIGSTOP)
        try:
            yield
            time.sleep(seconds)
        finally:
            os.kill(self.kube_pid, signal.SIGCONT)

    def helms(self) -> list[int]:
        """PIDs of live helm processes that talk to this bed (their environment names its kubeconfig)."""
        found, wanted = [], f"KUBECONFIG={self.kubeconfig}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError):
                continue
            if state != b"Z" and argv[0].endswith((b"helm3", b"helm4")) and wanted in environ:
                found.append(int(entry.name))
        return found

    def helm_gone(self, timeout: float = 15) -> None:
        wait_until(lambda: not self.helms(), timeout, "every helm process of this bed to end")

    def close(self) -> None:
        """Whatever a failed test left: its manual-deploy processes, then any helm of this bed."""
        for run in self.runs:
            if run.proc.poll() is None:
                try:
                    os.killpg(run.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                run.proc.communicate(timeout=10)
        for pid in self.helms():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_emulator(tmp: Path, *, pod_start_delay: float = 0.2) -> tuple[subprocess.Popen, dict]:
    kubeconfig, ready = tmp / "kubeconfig", tmp / "kube-ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "manual_deploy_sandbox.kube", "--kubeconfig", str(kubeconfig),
                             "--token", TOKEN, "--ready-file", str(ready), "--pod-start-delay", str(pod_start_delay)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        info = wait_until(lambda: ready.exists() and json.loads(ready.read_text()), 30, "the emulator to start")
    except BaseException:
        stop_emulator(proc)
        raise
    return proc, info


def stop_emulator(proc: subprocess.Popen) -> None:
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a frozen emulator cannot stop
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(timeout=10)


def make_crash_bed(tmp: Path, registry, deploy_repo, helm: Path, *, pod_start_delay: float = 0.2):
    proc, info = start_emulator(tmp, pod_start_delay=pod_start_delay)
    ca = tmp / "kube-ca.pem"
    ca.write_text(info["ca_pem"])
    config = write_bed_config(tmp / "config.yaml", registry_url=registry.url, deploy_url=deploy_repo.url, helm=helm)
    return proc, CrashBed(tmp=tmp, config=config, kubeconfig=Path(info["kubeconfig"]), url=info["url"], ca=ca,
                          kube_pid=proc.pid, helm=helm, registry_url=registry.url)


# --- what the tests on this bed do and check -------------------------------------------------------

BROKEN = ("--grace", "90s", "--timeout", "2m")  # as the drill: helm would wait minutes


def apply_args(tag: str, *extra: str) -> list[str]:
    return ["apply", "--env", "prod", "--app", "ingest-core", "--tag", tag, "--yes", "--reason", "INC-7", *extra]


def live_release(bed, tag: str) -> str:
    """A first good deploy of `tag`; returns the image the chart runs."""
    image = bed.publish(tag)
    run = bed.run(*apply_args(tag))
    assert run.proc.returncode == 0, run.err
    return image


def broken_rollout(bed, tag: str = "bad1", user: str = "alice", background: bool = False):
    """A deploy of an image whose pods crash, started and left waiting in helm (pending-upgrade)."""
    bed.publish(tag)
    bed.fail(f"*:{tag}*", "CrashLoopBackOff")
    run = bed.start(*apply_args(tag, *BROKEN), user=user, background=background)
    wait_until(lambda: bed.history()[-1]["status"] == "pending-upgrade", 60, "helm to start the upgrade")
    return run


def lock_asked(bed, after: int) -> bool:
    """The run asked for its lock (a Lease create) since the journal had `after` requests."""
    return any(r["method"] == "POST" and r["path"].endswith("/leases") for r in bed.requests()[after:])


def lock_taken(bed, after: int) -> bool:
    """The run holds its lock: helm read its release storage (Secrets) after the Lease create. The journal logs
    a request when it arrives, so the create alone does not prove the run was answered."""
    asked = [i for i, r in enumerate(bed.requests()[after:]) if r["method"] == "POST" and r["path"].endswith("/leases")]
    return bool(asked) and any("/secrets" in r["path"] for r in bed.requests()[after + asked[0] + 1:])


def assert_back_on(bed, image: str) -> None:
    assert bed.history()[-1]["status"] == "deployed", bed.history()
    assert bed.running_image() == image
