"""apply's own undo, in the cases where helm cannot undo the failed rollout itself.

Every other "rolls back" test also passes when apply's undo does nothing: stopped with SIGTERM, helm's
own --atomic (helm 3) / --rollback-on-failure (helm 4) rolls back or uninstalls by itself. Here helm
is made unable to, with real components, and only apply's undo can put the old image back:

- helm killed before its rollback: the helm executable is a wrapper that runs the real helm and, told
  to stop, SIGKILLs it at once, as the OOM killer, a CI runner or the tool's own SIGKILL (helm still busy
  after STOP_GRACE_S) would. helm leaves the new revision pending-upgrade / pending-install.
- helm's own rollback or uninstall failing: the emulated API server refuses that one write (a counted
  `deny`, as a flapping admission webhook or RBAC binding would) and lets the next one through.
  helm leaves `failed` (upgrade) or `uninstalling` (first install).
- a first install left `failed`: helm 3.17 / 4.1 only record `failed` for a first install when they
  do not clean up themselves, so the wrapper drops their cleanup flag.

Each test asserts what the user sees: the exit code and message, helm history, the image the
Deployment runs, the lock released, and no helm (or wrapper) process left behind.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from bed import NS, apply, history, publish, write_bed_config
from manual_deploy import audit

# The helm executable apply runs: the real helm as a child, and a log line per call.
WRAPPER = '''#!{python} -I
"""helm, except: mode "kill" SIGKILLs it at once when told to stop (SIGTERM), before any rollback or
cleanup of its own; mode "no-cleanup" runs it without --atomic / --rollback-on-failure."""
import json, signal, subprocess, sys

REAL, LOG, MODE = {real!r}, {log!r}, {mode!r}
argv = [REAL, *sys.argv[1:]]
if MODE == "no-cleanup":
    argv = [a for a in argv if a not in ("--atomic", "--rollback-on-failure")]
helm, stopped = None, []


def stop(signum, frame):
    stopped.append(signum)
    if helm is not None and MODE == "kill":
        helm.kill()
    elif helm is not None:
        helm.send_signal(signum)


signal.signal(signal.SIGTERM, stop)
helm = subprocess.Popen(argv)
if stopped:  # told to stop while helm was being started
    stop(stopped[0], None)
code = helm.wait()
call = {{"argv": argv[1:], "pid": helm.pid, "code": code, "killed": MODE == "kill" and bool(stopped)}}
with open(LOG, "a") as log:
    log.write(json.dumps(call) + "\\n")
sys.exit(code if code >= 0 else 128 - code)
'''


def use_wrapper(bed, tmp_path: Path, mode: str) -> Path:
    """Point the bed's config at a helm wrapper (see WRAPPER); returns its log of helm calls."""
    wrapper, log = tmp_path / f"helm-{mode}", tmp_path / f"helm-{mode}.log"
    wrapper.write_text(WRAPPER.format(python=sys.executable, real=str(bed.helm), log=str(log), mode=mode))
    wrapper.chmod(0o755)
    write_bed_config(bed.config, registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url, helm=wrapper)
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def processes_of(bed) -> list[int]:
    """Processes started for this test's cluster (helm, a wrapper): they carry its KUBECONFIG."""
    mark = f"KUBECONFIG={bed.kubeconfig}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


@pytest.fixture
def no_helm_left(bed):
    """Asserts, after the test's apply, that no helm it started still runs; kills any that do (by pid)."""

    def check() -> None:
        assert processes_of(bed) == [], "helm left running"

    yield check
    for pid in processes_of(bed):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def next_deployment_write_refused_after_the_upgrades(bed):
    """Once the upgrade has written (patched) the Deployment, the API server refuses the next patch once.

    Armed from a thread watching the emulator's request log: the upgrade's own write has to go through;
    the next one (helm's own rollback, seconds later) is refused; the one after that (apply's undo) is not."""
    done = threading.Event()
    armed = []
    before = list(bed.kube.requests)  # kept alive, so their ids are not reused
    earlier = {id(r) for r in before}

    def arm() -> None:
        while not done.is_set():
            if any(id(r) not in earlier and r["method"] == "PATCH" and r["path"].endswith("/deployments/ingest-core")
                   and r["status"] == 200 for r in list(bed.kube.requests)):
                bed.kube.deny("patch", "deployments", group="apps", namespace=NS, times=1)
                armed.append(True)
                return
            done.wait(0.02)

    thread = threading.Thread(target=arm, name="arm-refusal", daemon=True)
    thread.start()
    try:
        yield armed
    finally:
        done.set()
        thread.join(10)


def refused(bed, method: str) -> list[str]:
    return [r["path"] for r in bed.kube.requests if r["method"] == method and r["status"] == 403]


def live_image(bed) -> str:
    apps_api, _, _ = bed.apps_api()
    return apps_api.read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image


def nothing_installed(bed) -> None:
    apps_api, core, _ = bed.apps_api()
    assert history(bed, "ingest-core") == []
    assert apps_api.list_namespaced_deployment(NS).items == []
    assert core.list_namespaced_service(NS).items == []


def lock_released(bed) -> bool:
    _, _, coordination = bed.apps_api()
    return coordination.list_namespaced_lease(NS).items == []


def deploy_good(cli, bed) -> None:
    publish(bed, "ingest-core", "good1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "good1", "--yes").code == 0
    publish(bed, "ingest-core", "bad1")


# ------------------------------------------------------------------------------------ helm killed


def test_helm_killed_before_its_rollback_apply_rolls_back(cli, bed, helm, tmp_path, no_helm_left):
    """Staged: the wrapper SIGKILLs helm when apply stops it after the pod check, so helm never starts
    its rollback and leaves revision 2 pending-upgrade with the crashing image live."""
    deploy_good(cli, bed)
    log = use_wrapper(bed, tmp_path, "kill")
    bed.kube.add_failure("*:bad1*", "CrashLoopBackOff")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "2s", "--timeout", "60s")

    assert result.code == 1, result.stderr
    assert [c["argv"][0] for c in calls(log) if c["killed"]] == ["upgrade"]  # the staging happened
    assert "rollout failed, stopping helm and rolling back" in result.stderr, result.stderr
    assert "CrashLoopBackOff in pod ingest-core-" in result.stderr
    tail = result.stderr.split("rolled back to revision 1: revision 3 is live again with ", 1)[1]
    assert ":good1@" in tail.splitlines()[0], result.stderr
    revisions = history(bed, "ingest-core")
    assert [r["status"] for r in revisions] == ["superseded", "pending-upgrade", "deployed"], revisions
    assert revisions[-1]["description"] == "Rollback to 1"
    assert ":good1@" in live_image(bed)
    assert lock_released(bed)
    no_helm_left()
    assert audit.read()[-1]["result"] == "failed"


def test_a_first_install_whose_helm_was_killed_is_removed(cli, bed, helm, tmp_path, no_helm_left):
    """Staged: the wrapper SIGKILLs helm when apply stops it, so helm never uninstalls the crashing
    first install (left pending-install); apply's own uninstall has to remove it."""
    publish(bed, "ingest-core", "bad1")
    log = use_wrapper(bed, tmp_path, "kill")
    bed.kube.add_failure("*:bad1*", "CrashLoopBackOff")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "2s", "--timeout", "60s")

    assert result.code == 1, result.stderr
    commands = [(c["argv"][0], c["code"], c["killed"]) for c in calls(log)]
    killed = commands.index(("upgrade", -signal.SIGKILL, True))  # the staging happened
    assert ("uninstall", 0, False) in commands[killed:], commands  # apply's own, after the kill
    assert "CrashLoopBackOff in pod ingest-core-" in result.stderr, result.stderr
    assert "the first install was removed again; nothing of it is left" in result.stderr, result.stderr
    nothing_installed(bed)
    assert lock_released(bed)
    no_helm_left()


# ---------------------------------------------------------------------- helm's own undo refused


def test_helms_own_rollback_refused_apply_rolls_back(cli, bed, helm, no_helm_left):
    """Staged: after the pod check stops helm, the API server refuses helm's rollback write to the
    Deployment once; helm records its rollback `failed` and exits with the crashing image live."""
    deploy_good(cli, bed)
    bed.kube.add_failure("*:bad1*", "CrashLoopBackOff")

    with next_deployment_write_refused_after_the_upgrades(bed) as armed:
        result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "2s", "--timeout", "60s")

    assert result.code == 1, result.stderr
    assert armed and refused(bed, "PATCH") == [f"/apis/apps/v1/namespaces/{NS}/deployments/ingest-core"]
    assert "rollout failed, stopping helm and rolling back" in result.stderr, result.stderr
    tail = result.stderr.split("rolled back to revision 1: revision 4 is live again with ", 1)[1]
    assert ":good1@" in tail.splitlines()[0], result.stderr
    revisions = history(bed, "ingest-core")
    assert [r["status"] for r in revisions] == ["superseded", "superseded", "failed", "deployed"], revisions
    refusal = revisions[2]["description"]
    assert refusal.startswith('Rollback "ingest-core" failed') and "forbidden" in refusal, refusal
    assert revisions[3]["description"] == "Rollback to 1"
    assert ":good1@" in live_image(bed)
    assert lock_released(bed)
    no_helm_left()


def test_helm_gives_up_and_its_rollback_is_refused_apply_rolls_back(cli, bed, helm, no_helm_left):
    """helm's own --timeout ends first (the grace is longer) and its rollback write is refused once:
    helm exits with an error, the release `failed` and the unpullable image live. apply used to only
    describe that; it must roll back itself."""
    deploy_good(cli, bed)
    bed.kube.add_failure("*:bad1*", "ImagePullBackOff")

    with next_deployment_write_refused_after_the_upgrades(bed) as armed:
        result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "10m", "--timeout", "6s")

    assert result.code == 1, result.stderr
    assert armed and len(refused(bed, "PATCH")) == 1
    error = result.stderr.split("error: ", 1)[1]
    assert error.startswith("ingest-core: helm upgrade failed (release now at revision 3, failed: "), result.stderr
    assert "an error occurred while rolling back the release" in error  # helm's own words
    tail = error.split("; rolled back to revision 1: revision 4 is live again with ", 1)[1]
    assert ":good1@" in tail.splitlines()[0], result.stderr
    revisions = history(bed, "ingest-core")
    assert [r["status"] for r in revisions] == ["superseded", "superseded", "failed", "deployed"], revisions
    assert revisions[-1]["description"] == "Rollback to 1"
    assert ":good1@" in live_image(bed)
    assert lock_released(bed)
    no_helm_left()
    assert audit.read()[-1]["result"] == "failed"


def test_a_first_install_helm_could_not_remove_is_removed(cli, bed, helm, no_helm_left):
    """helm's --timeout ends a first install whose image cannot be pulled; its own uninstall is refused
    deleting the Deployment once, so it leaves the release `uninstalling` with the Deployment still
    there. apply must remove it."""
    publish(bed, "ingest-core", "bad1")
    bed.kube.add_failure("*:bad1*", "ImagePullBackOff")
    bed.kube.deny("delete", "deployments", group="apps", namespace=NS, times=1)  # an install never deletes

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "10m", "--timeout", "6s")

    assert result.code == 1, result.stderr
    assert len(refused(bed, "DELETE")) == 1
    error = result.stderr.split("error: ", 1)[1]
    assert error.startswith("ingest-core: helm upgrade failed (release now at revision 1, uninstalling: "), error
    assert "an error occurred while uninstalling the release" in error  # helm's own words
    assert "; the first install was removed again; nothing of it is left" in error, result.stderr
    nothing_installed(bed)
    assert lock_released(bed)
    no_helm_left()


def test_a_first_install_left_failed_is_removed(cli, bed, helm, tmp_path, no_helm_left):
    """Staged: the wrapper drops --atomic / --rollback-on-failure, so when helm's --timeout ends the
    first install helm records it `failed` and leaves it, Deployment and all. apply must remove it."""
    publish(bed, "ingest-core", "bad1")
    log = use_wrapper(bed, tmp_path, "no-cleanup")
    bed.kube.add_failure("*:bad1*", "ImagePullBackOff")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "10m", "--timeout", "6s")

    assert result.code == 1, result.stderr
    (upgrade,) = [c for c in calls(log) if c["argv"][0] == "upgrade"]
    assert upgrade["code"] == 1 and not {"--atomic", "--rollback-on-failure"} & set(upgrade["argv"])
    error = result.stderr.split("error: ", 1)[1]
    assert error.startswith("ingest-core: helm upgrade failed (release now at revision 1, failed: "), result.stderr
    assert "; the first install was removed again; nothing of it is left" in error, result.stderr
    nothing_installed(bed)
    assert lock_released(bed)
    no_helm_left()


def test_a_helm_that_failed_before_changing_anything_is_not_undone(cli, bed, helm, no_helm_left):
    """The other side of undoing after helm's own failure: when helm could not even record the new
    revision (creating its release Secret is refused, once), the live revision is untouched and
    apply must leave it alone, not roll back to it."""
    deploy_good(cli, bed)
    bed.kube.deny("create", "secrets", namespace=NS, times=1)

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "2s", "--timeout", "60s")

    assert result.code == 1, result.stderr
    assert len(refused(bed, "POST")) == 1
    assert "helm upgrade failed (release now at revision 1, deployed: " in result.stderr, result.stderr
    assert "rolling back" not in result.stderr and "rolled back" not in result.stderr, result.stderr
    assert "removed again" not in result.stderr
    assert [r["status"] for r in history(bed, "ingest-core")] == ["deployed"]
    assert ":good1@" in live_image(bed)
    assert lock_released(bed)
    no_helm_left()
