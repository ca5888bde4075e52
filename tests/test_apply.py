"""`manual-deploy apply` end to end on the bed: real helm 3 and 4, real registry, real git, emulated cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bed import KUBE_TOKEN, NS, apply, history, publish, release_secret_status, write_bed_config, writes
from helpers import interrupt_when
from manual_deploy import audit


def test_chain_tag_wait_apply_with_no_arguments(cli, bed, app_repo, monkeypatch):
    monkeypatch.chdir(app_repo.checkout)
    tag = cli("--config", bed.config, "tag").stdout.strip()
    digest = publish(bed, "ingest-core", tag)
    waited = cli("--config", bed.config, "wait-image", "--timeout", "20s")
    assert waited.code == 0, waited.stderr

    result = cli("--config", bed.config, "apply", "--env", "prod", "--yes", "--reason", "INC-1 fix")

    assert result.code == 0, result.stderr
    apps_api, core, _ = bed.apps_api()
    deployment = apps_api.read_namespaced_deployment("ingest-core", NS)
    container = deployment.spec.template.spec.containers[0]
    assert container.image == f"{bed.registry.host}/ebi-ait/ingest-core:{tag}@{digest}"
    assert deployment.spec.replicas == 1
    annotations = deployment.spec.template.metadata.annotations
    assert annotations["app.gitlab.com/app"] == "hca-ingest-core" and annotations["app.gitlab.com/env"] == "prod"
    for phase in ("target", "image", "config", "plan", "confirm", "lock", "upgrade+verify"):
        assert f"✓ {phase}" in result.stderr, phase
    assert "revision 1" in result.stdout
    revisions = history(bed, "ingest-core")
    assert [r["status"] for r in revisions] == ["deployed"]
    assert "INC-1 fix" in revisions[0]["description"]
    record = audit.read()[-1]
    assert record["app"] == "ingest-core" and record["result"] == "deployed" and record["digest"] == digest
    assert record["config_sha"] == bed.deploy_repo.head("master") and record["new_revision"] == 1
    assert KUBE_TOKEN not in result.stdout + result.stderr
    # the lock was released
    _, _, coordination = bed.apps_api()
    assert [l.metadata.name for l in coordination.list_namespaced_lease(NS).items] == []


def test_prod_exporter_gets_ten_replicas_and_fastq_image(cli, bed):
    publish(bed, "ingest-exporter", "exp1")
    result = apply(cli, bed, "--app", "ingest-exporter", "--tag", "exp1", "--yes", "-o", "json")
    assert result.code == 0, result.stderr
    apps_api, core, _ = bed.apps_api()
    deployment = apps_api.read_namespaced_deployment("ingest-exporter", NS)
    assert deployment.spec.replicas == 10
    assert deployment.metadata.namespace == NS
    pods = core.list_namespaced_pod(NS, label_selector="app=ingest-exporter").items
    assert len(pods) == 10
    data = result.json()
    assert data["results"][0]["replicas"] == 10
    values = subprocess.run(
        [str(bed.helm), "get", "values", "ingest-exporter", "-n", NS, "--kube-context", "ingest-eks-prod", "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert json.loads(values.stdout)["fastqImage"].startswith("quay.io/ebi-ait/fastq_utils:")


def test_same_image_again_is_no_change_and_dry_run_changes_nothing(cli, bed):
    old = publish(bed, "ingest-core", "same1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "same1", "--yes").code == 0

    again = apply(cli, bed, "--app", "ingest-core", "--tag", "same1", "--yes")
    assert again.code == 0, again.stderr
    assert "no change" in again.stderr
    assert len(history(bed, "ingest-core")) == 1

    new = publish(bed, "ingest-core", "same2")
    before = len(writes(bed))
    dry = apply(cli, bed, "--app", "ingest-core", "--tag", "same2", "--dry-run")
    assert dry.code == 0, dry.stderr
    # the unified diff of the rendered manifests a user reads: live revision → new, the image line swapped
    lines = dry.stdout.splitlines()
    repo = f"{bed.registry.host}/ebi-ait/ingest-core"
    minus, plus = "--- ingest-core (live revision 1)", "+++ ingest-core (new)"
    removed, added = f"-        image: {repo}:same1@{old}", f"+        image: {repo}:same2@{new}"
    assert minus in lines and plus in lines and removed in lines and added in lines, dry.stdout
    assert lines.index(minus) + 1 == lines.index(plus) < lines.index(removed) < lines.index(added), dry.stdout
    assert lines[lines.index(plus) + 1].startswith("@@ -"), dry.stdout
    assert len(history(bed, "ingest-core")) == 1
    assert len(writes(bed)) == before


def test_wrong_context_refused_before_any_cluster_write(cli, bed, tmp_path):
    bad = write_bed_config(
        tmp_path / "bad.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url, helm=bed.helm,
        cluster_server="https://prod.eks.amazonaws.com",
    )
    publish(bed, "ingest-core", "ctx1")
    result = cli("--config", bad, "apply", "--env", "prod", "--app", "ingest-core", "--tag", "ctx1", "--yes")
    assert result.code == 3, result.stderr
    assert "must be https://prod.eks.amazonaws.com" in result.stderr
    missing = apply(cli, bed, "--app", "ingest-core", "--tag", "ctx1", "--yes", "--kube-context", "ingest-eks-nope")
    assert missing.code == 3 and "is not in" in missing.stderr
    assert writes(bed) == []


def test_missing_image_is_refused_and_leaves_no_helm_behind(cli, bed, monkeypatch):
    """The release's `helm status` starts right after the target phase; a refusal in the image phase
    must stop and reap it (the real helm; the subclass only remembers which processes apply started)."""
    from manual_deploy.helm import StatusRead
    from manual_deploy.release import speed

    started = []

    class Remembered(StatusRead):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self.proc)

    monkeypatch.setattr(speed, "StatusRead", Remembered)
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "never-built", "--yes")
    assert result.code == 3, result.stderr
    assert "not in the registry" in result.stderr and "wait-image" in result.stderr
    assert writes(bed) == []
    assert len(started) == 1 and started[0].returncode is not None


def test_prod_without_yes_and_no_tty_is_refused(cli, bed, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    publish(bed, "ingest-core", "conf1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "conf1")
    assert result.code == 3, result.stderr
    assert "--yes" in result.stderr
    assert history(bed, "ingest-core") == []


@pytest.mark.parametrize("answer, code", [("prod", 0), ("staging", 3)])
def test_prod_asks_for_the_env_name_and_holds_no_lock_while_it_asks(cli, bed, monkeypatch, answer, code):
    """A prompt left open must not block colleagues: the locks are taken only after the answer."""
    import io

    _, _, coordination = bed.apps_api()
    leases_while_asking = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

        def readline(self, *args) -> str:
            leases_while_asking.append([lease.metadata.name for lease in coordination.list_namespaced_lease(NS).items])
            return f"{answer}\n"

    monkeypatch.setattr(sys, "stdin", Terminal())
    publish(bed, "ingest-core", "ask1")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "ask1")

    assert result.code == code, result.stderr
    assert "Type the environment name" in result.stderr
    assert leases_while_asking == [[]]
    assert coordination.list_namespaced_lease(NS).items == []
    if code == 0:
        assert result.stderr.index("✓ plan") < result.stderr.index("✓ confirm") < result.stderr.index("✓ lock")
        assert [r["status"] for r in history(bed, "ingest-core")] == ["deployed"]
    else:
        assert "did not match" in result.stderr and history(bed, "ingest-core") == []


def test_lock_held_is_refused_and_break_lock_proceeds(cli, bed):
    from kubernetes import client

    _, _, coordination = bed.apps_api()
    coordination.create_namespaced_lease(NS, client.V1Lease(
        metadata=client.V1ObjectMeta(name="manual-deploy-ingest-core"),
        spec=client.V1LeaseSpec(holder_identity="alice@laptop#42", lease_duration_seconds=900,
                                acquire_time="2099-01-01T00:00:00.000001Z", renew_time="2099-01-01T00:00:00.000001Z"),
    ))
    publish(bed, "ingest-core", "lock1")
    held = apply(cli, bed, "--app", "ingest-core", "--tag", "lock1", "--yes")
    assert held.code == 3, held.stderr
    assert "alice@laptop#42" in held.stderr and "--break-lock" in held.stderr
    assert history(bed, "ingest-core") == []

    broken = apply(cli, bed, "--app", "ingest-core", "--tag", "lock1", "--yes", "--break-lock")
    assert broken.code == 0, broken.stderr
    assert "alice@laptop#42" in broken.stderr
    assert audit.read()[-1]["lock_broken_from"] == "alice@laptop#42"


def test_break_lock_on_a_live_run_asks_first_and_never_guesses_without_a_terminal(cli, bed):
    """dev asks nothing for the env, but taking a live run's lock is asked for (here: no terminal → refused)."""
    from kubernetes import client

    _, _, coordination = bed.apps_api()
    coordination.create_namespaced_lease("dev-environment", client.V1Lease(
        metadata=client.V1ObjectMeta(name="manual-deploy-ingest-core", annotations={"manual-deploy.ebi-ait/reason": "INC-3"}),
        spec=client.V1LeaseSpec(holder_identity="alice@laptop#42", lease_duration_seconds=30,
                                acquire_time="2099-01-01T00:00:00.000001Z", renew_time="2099-01-01T00:00:00.000001Z"),
    ))
    publish(bed, "ingest-core", "ask1")

    unasked = apply(cli, bed, "--app", "ingest-core", "--tag", "ask1", "--break-lock", env="dev")

    assert unasked.code == 3, unasked.stderr
    assert "alice@laptop#42 (INC-3)" in unasked.stderr and "needs confirmation" in unasked.stderr, unasked.stderr
    assert "--break-lock --yes" in unasked.stderr
    assert history(bed, "ingest-core", namespace="dev-environment", context="ingest-eks-dev") == []
    lease = coordination.read_namespaced_lease("manual-deploy-ingest-core", "dev-environment")
    assert lease.spec.holder_identity == "alice@laptop#42"


def test_one_app_locked_by_someone_else_refuses_the_whole_apply(cli, bed):
    """Several apps: every lock is taken before anything is written, so a held lock on one app
    leaves the others untouched (and unlocked) instead of a half-done deploy."""
    from kubernetes import client

    _, _, coordination = bed.apps_api()
    coordination.create_namespaced_lease(NS, client.V1Lease(
        metadata=client.V1ObjectMeta(name="manual-deploy-ingest-exporter"),
        spec=client.V1LeaseSpec(holder_identity="bob@desk#7", lease_duration_seconds=900,
                                acquire_time="2099-01-01T00:00:00.000001Z", renew_time="2099-01-01T00:00:00.000001Z"),
    ))
    for app in ("ingest-core", "ontology", "ingest-exporter"):
        publish(bed, app, "all1")

    held = apply(cli, bed, "--app", "ingest-core", "--app", "ontology", "--app", "ingest-exporter", "--tag", "all1", "--yes")

    assert held.code == 3, held.stderr
    assert "bob@desk#7" in held.stderr and "manual-deploy-ingest-exporter" in held.stderr
    assert history(bed, "ingest-core") == [] and history(bed, "ontology") == [] and history(bed, "ingest-exporter") == []
    assert [lease.metadata.name for lease in coordination.list_namespaced_lease(NS).items] == ["manual-deploy-ingest-exporter"]

    coordination.delete_namespaced_lease("manual-deploy-ingest-exporter", NS)
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "all1", "--yes").code == 0
    both = apply(cli, bed, "--app", "ingest-core", "--app", "ontology", "--tag", "all1", "--yes")  # core unchanged
    assert both.code == 0, both.stderr
    assert [r["status"] for r in history(bed, "ingest-core")] == ["deployed"]
    assert coordination.list_namespaced_lease(NS).items == []


@pytest.mark.parametrize("mode, needle", [("ImagePullBackOff", "ImagePullBackOff"), ("CrashLoopBackOff", "CrashLoopBackOff")])
def test_broken_image_fails_fast_and_rolls_back(cli, bed, helm, mode, needle):
    publish(bed, "ingest-core", "good1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "good1", "--yes").code == 0
    publish(bed, "ingest-core", "bad1")
    bed.kube.add_failure("*:bad1*", mode, log="Exception in thread main: java.lang.IllegalStateException: no mongo\n")

    # helm's own timeout is far beyond the grace: only the pod check can end this early.
    started = time.monotonic()
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "bad1", "--yes", "--grace", "3s", "--timeout", "90s")
    took = time.monotonic() - started

    assert result.code == 1, result.stderr
    assert "rollout failed, stopping helm and rolling back" in result.stderr, result.stderr
    assert took < 3 + 40, (took, result.stderr)  # grace + rollback on a slow machine; helm alone would take 90 s
    assert f"{needle} in pod ingest-core-" in result.stderr, result.stderr
    assert "recent events" in result.stderr
    if mode == "CrashLoopBackOff":
        assert "no mongo" in result.stderr
    apps_api, _, _ = bed.apps_api()
    image = apps_api.read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image
    assert ":good1@" in image
    assert history(bed, "ingest-core")[-1]["status"] == "deployed"
    assert audit.read()[-1]["result"] == "failed"
    assert KUBE_TOKEN not in result.stdout + result.stderr


def test_a_broken_first_install_is_removed_and_the_error_says_why(cli, bed, helm):
    """No earlier revision to go back to: the failed first install is removed, whether helm's own
    --atomic already did it when it was stopped or apply has to; the user sees the pod's problem."""
    publish(bed, "ingest-core", "crash1")
    bed.kube.add_failure("*:crash1*", "CrashLoopBackOff", log="java.lang.IllegalStateException: no mongo\n")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "crash1", "--yes", "--grace", "3s", "--timeout", "90s")

    assert result.code == 1, result.stderr
    assert "CrashLoopBackOff in pod ingest-core-" in result.stderr, result.stderr
    assert "the first install was removed again; nothing of it is left" in result.stderr, result.stderr
    assert "ReleaseNotFoundError" not in result.stderr
    assert history(bed, "ingest-core") == []
    apps_api, _, coordination = bed.apps_api()
    assert apps_api.list_namespaced_deployment(NS).items == []
    assert coordination.list_namespaced_lease(NS).items == []
    assert audit.read()[-1]["result"] == "failed"


def test_a_roll_back_that_fails_too_keeps_the_first_reason(cli, bed, monkeypatch):
    """The cluster going away between the pod failure and the roll back cannot be staged on the
    emulator, so helm's uninstall is made to fail the way pyhelm3 reports it; the rest is real."""
    from pyhelm3 import errors as helm_errors

    from manual_deploy.helm import HelmDriver

    async def unreachable(self, release, namespace, *, timeout_s):
        raise helm_errors.Error(1, b"", b"Error: Kubernetes cluster unreachable: dial tcp: connection refused")

    monkeypatch.setattr(HelmDriver, "uninstall", unreachable)
    publish(bed, "ingest-core", "crash2")
    bed.kube.add_failure("*:crash2*", "CrashLoopBackOff")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "crash2", "--yes", "--grace", "3s", "--timeout", "90s")

    assert result.code == 1, result.stderr
    assert "CrashLoopBackOff in pod ingest-core-" in result.stderr, result.stderr
    assert "rolling back failed too: Error: Kubernetes cluster unreachable" in result.stderr, result.stderr
    assert "`manual-deploy status --env prod --app ingest-core`" in result.stderr
    assert audit.read()[-1]["result"] == "failed"


def test_when_helms_timeout_ends_first_the_error_says_what_it_waited_for(cli, bed):
    """A grace period longer than helm's --timeout: helm gives up (and rolls back) before the pod check
    may; the user still learns why the rollout never finished."""
    publish(bed, "ingest-core", "ok1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "ok1", "--yes").code == 0
    publish(bed, "ingest-core", "pull1")
    bed.kube.add_failure("*:pull1*", "ImagePullBackOff")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "pull1", "--yes", "--grace", "10m", "--timeout", "8s")

    assert result.code == 1, result.stderr
    assert "helm upgrade failed" in result.stderr and "context deadline exceeded" in result.stderr, result.stderr
    waited = result.stderr.split("not ready when helm gave up:\n", 1)[1]
    assert "Pod ingest-core-" in waited and "ImagePullBackOff (container ingest-core)" in waited, result.stderr
    assert "Warning Failed: Failed to pull image" in waited, result.stderr  # the pod's last events
    assert "next: see what runs now: `manual-deploy status --env prod --app ingest-core`" in result.stderr
    assert history(bed, "ingest-core")[-1]["status"] == "deployed"  # helm's own rollback


def test_pending_release_is_refused_with_the_recovery_command(cli, bed):
    from kubernetes import config as kconfig

    publish(bed, "ingest-core", "pend1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "pend1", "--yes").code == 0
    api = kconfig.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    release_secret_status(api, NS, "ingest-core", 1, "pending-upgrade")
    publish(bed, "ingest-core", "pend2")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "pend2", "--yes")

    assert result.code == 3, result.stderr
    assert "pending-upgrade" in result.stderr and "--recover" in result.stderr and "helm rollback ingest-core" in result.stderr


def test_environment_file_is_never_executed(cli, bed, tmp_path, monkeypatch):
    shim = tmp_path / "shim"
    shim.mkdir()
    calls = tmp_path / "aws-calls"
    (shim / "aws").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (shim / "aws").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{Path(sys.executable).parent}:/usr/bin:/bin")
    publish(bed, "ingest-core", "aws1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "aws1", "--yes")
    assert result.code == 0, result.stderr
    assert not calls.exists(), calls.read_text()


def test_sigint_during_the_wait_releases_the_lock(bed):
    """A real process and a real SIGINT while helm waits on pods that never become ready."""
    publish(bed, "ingest-core", "slow1")
    bed.kube.add_failure("*:slow1*", "ProgressDeadlineExceeded")
    _, _, coordination = bed.apps_api()

    def deployment_written():
        return any(r["path"].endswith("/deployments") and r["method"] in ("POST", "PATCH", "PUT") for r in bed.kube.requests)

    def lock_is_held():
        assert coordination.list_namespaced_lease(NS).items, "the lock should be held during the wait"

    code, _, err = interrupt_when(
        ["--config", bed.config, "apply", "--env", "prod", "--app", "ingest-core", "--tag", "slow1", "--yes", "--grace", "10m", "--timeout", "5m"],
        deployment_written, settle=1.0, before_signal=lock_is_held,
    )
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert coordination.list_namespaced_lease(NS).items == []


def test_recover_rolls_back_a_stuck_release_then_deploys(cli, bed):
    from kubernetes import config as kconfig

    publish(bed, "ingest-core", "rec1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "rec1", "--yes").code == 0
    publish(bed, "ingest-core", "rec2")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "rec2", "--yes").code == 0
    api = kconfig.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    release_secret_status(api, NS, "ingest-core", 2, "pending-upgrade")
    publish(bed, "ingest-core", "rec3")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "rec3", "--yes", "--recover")

    assert result.code == 0, result.stderr
    assert "rolling back the stuck pending-upgrade to revision 1" in result.stderr
    statuses = [r["status"] for r in history(bed, "ingest-core")]
    assert statuses[-1] == "deployed" and len(statuses) == 4


def test_several_apps_deploy_concurrently_with_one_summary(cli, bed):
    publish(bed, "ingest-core", "multi1")
    publish(bed, "ingest-exporter", "multi1")
    result = apply(cli, bed, "--app", "ingest-core", "--app", "ingest-exporter", "--tag", "multi1", "--yes", "-o", "json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert [(r["app"], r["result"]) for r in data["results"]] == [("ingest-core", "deployed"), ("ingest-exporter", "deployed")]
    assert {r["app"] for r in audit.read()[-2:]} == {"ingest-core", "ingest-exporter"}
    # concurrently: both releases were created (helm's first write) before either was marked deployed
    secrets = f"/api/v1/namespaces/{NS}/secrets"
    writes_ = [(r["method"], r["path"]) for r in bed.kube.requests if r["path"].startswith(secrets)]
    first_update = next(i for i, (method, path) in enumerate(writes_) if method == "PUT" and "sh.helm.release.v1." in path)
    assert sum(1 for method, _ in writes_[:first_update] if method == "POST") >= 2, writes_


def test_one_app_of_two_without_an_image_refuses_the_whole_apply(cli, bed):
    """A missing image is found in the image phase, before any lock or write: neither app is deployed."""
    publish(bed, "ingest-core", "mix1")
    result = apply(cli, bed, "--app", "ingest-core", "--app", "ingest-exporter", "--tag", "mix1", "--yes", "-o", "json")
    assert result.code == 3, result.stderr  # ingest-exporter:mix1 was never built
    assert "ingest-exporter" in result.stderr and "not in the registry" in result.stderr, result.stderr
    assert history(bed, "ingest-core") == [] and history(bed, "ingest-exporter") == []
    assert writes(bed) == []


def test_two_of_three_apps_fail_each_with_its_own_reason_and_next_command(cli, bed):
    """Three apps in one apply: ingest-core's new image cannot be pulled (it had a good revision: rolled
    back), ingest-archiver's crashes (a first install: removed), ontology deploys. One error lists all three."""
    publish(bed, "ingest-core", "three0")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "three0", "--yes").code == 0
    for app in ("ingest-core", "ingest-archiver", "ontology"):
        publish(bed, app, "three1")
    bed.kube.add_failure("*/ingest-core:three1*", "ImagePullBackOff")
    bed.kube.add_failure("*/ingest-archiver:three1*", "CrashLoopBackOff")

    result = apply(cli, bed, "--app", "ingest-core", "--app", "ingest-archiver", "--app", "ontology", "--tag", "three1",
                   "--yes", "--grace", "2s", "--timeout", "90s")

    assert result.code == 1, result.stderr
    err = result.stderr
    assert "2 of 3 apps failed in prod: ingest-core, ingest-archiver" in err, err
    lines = err.splitlines()

    def block(app: str) -> str:
        """The app's `  ✗ app: reason` line and the lines that belong to it, up to the next app's line."""
        first = next(i for i, line in enumerate(lines) if line.startswith(f"  ✗ {app}: "))
        rest = next((i for i in range(first + 1, len(lines)) if lines[i].startswith(("  ✗ ", "  ✓ "))), len(lines))
        return "\n".join(lines[first:rest])

    core, archiver = block("ingest-core"), block("ingest-archiver")
    assert "ImagePullBackOff in pod ingest-core-" in core and "CrashLoopBackOff" not in core, core
    assert "CrashLoopBackOff in pod ingest-archiver-" in archiver and "ImagePullBackOff" not in archiver, archiver
    assert "rolled back: revision 3 is live again with " in core and ":three0@" in core, core
    assert "the first install was removed again; nothing of it is left" in archiver, archiver
    for app, text in (("ingest-core", core), ("ingest-archiver", archiver)):
        nexts = [line for line in text.splitlines() if line.startswith("      next: ")]
        assert len(nexts) == 1 and f"`manual-deploy apply --env prod --app {app} " in nexts[0], text
        other = "ingest-archiver" if app == "ingest-core" else "ingest-core"
        assert other not in nexts[0], text
    assert "  ✓ ontology: deployed (revision 1)" in lines, err

    assert [r["status"] for r in history(bed, "ontology")] == ["deployed"]
    core_history = history(bed, "ingest-core")
    assert len(core_history) == 3 and core_history[-1]["status"] == "deployed", core_history  # rolled back to three0
    assert core_history[1]["status"] == "failed"
    apps_api, _, coordination = bed.apps_api()
    assert ":three0@" in apps_api.read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image
    assert history(bed, "ingest-archiver") == []  # the failed first install was removed
    assert "ingest-archiver" not in [d.metadata.name for d in apps_api.list_namespaced_deployment(NS).items]
    assert coordination.list_namespaced_lease(NS).items == []
    assert {(r["app"], r["result"]) for r in audit.read()[-3:]} == {
        ("ingest-core", "failed"), ("ingest-archiver", "failed"), ("ontology", "deployed")}


def test_force_refresh_deletes_first_with_a_downtime_warning(cli, bed):
    publish(bed, "ingest-core", "fr1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "fr1", "--yes").code == 0
    apps_api, _, _ = bed.apps_api()
    uid = apps_api.read_namespaced_deployment("ingest-core", NS).metadata.uid
    publish(bed, "ingest-core", "fr2")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "fr2", "--yes", "--force-refresh")
    assert result.code == 0, result.stderr
    assert "downtime" in result.stderr
    assert apps_api.read_namespaced_deployment("ingest-core", NS).metadata.uid != uid


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["--app", "ingest-core", "--image", "quay.io/other/thing:1", "--yes"], 2, "is not an image of ingest-core"),
        (["--app", "ingest-core", "--image", "x", "--tag", "y"], 2, "not both"),
        (["--app", "ingest-nope", "--tag", "t1"], 2, "unknown app"),
        (["--app", "ingest-core", "--tag", "bad..tag"], 2, "invalid tag"),
        (["--app", "ingest-core", "--tag", "t1", "--timeout", "never"], 2, "invalid --timeout"),
        (["--app", "ingest-core", "--tag", "t1", "--config-ref", "--upload-pack=x"], 2, "invalid git revision"),
    ],
)
def test_bad_input_changes_nothing(cli, bed, app_repo, tmp_path, monkeypatch, args, code, needle):
    """Refused input leaves everything as it was, on a cluster with a live release: no cluster write, the
    same helm revisions, no lock, and not one byte changed in the state dir (audit log, recorded state),
    the config clone cache, the app checkout, the config repo or the registry."""
    import os

    monkeypatch.chdir(app_repo.checkout)  # where apply reads and records the checkout's state
    publish(bed, "ingest-core", "live1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "live1", "--yes").code == 0
    roots = [tmp_path, Path(os.environ["HOME"]), bed.deploy_repo.remote, bed.registry.root]
    before, written = everything(bed, roots), len(writes(bed))

    result = apply(cli, bed, *args)

    assert result.code == code, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert writes(bed)[written:] == []
    assert everything(bed, roots) == before


def everything(bed, roots: list[Path]) -> dict:
    """What a run could change: the cluster's newest resourceVersion (any write moves it) and its objects,
    every app's helm revisions, the leases, and the content of every file under `roots`."""
    import hashlib

    apps_api, core, coordination = bed.apps_api()
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                files[str(path)] = "dir"
    objects = {kind: sorted((o.metadata.name, o.metadata.resource_version) for o in listed.items)
               for kind, listed in (("secrets", core.list_namespaced_secret(NS)), ("pods", core.list_namespaced_pod(NS)),
                                    ("deployments", apps_api.list_namespaced_deployment(NS)))}
    return {
        "cluster": core.list_namespaced_config_map(NS).metadata.resource_version,  # the store's newest: any write moves it
        "objects": objects,
        "helm": {app: [(r["revision"], r["status"]) for r in history(bed, app)] for app in ("ingest-core", "ingest-exporter")},
        "leases": [lease.metadata.name for lease in coordination.list_namespaced_lease(NS).items],
        "files": files,
    }


def test_kube_context_override_is_loud(cli, bed):
    publish(bed, "ingest-core", "ovr1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "ovr1", "--yes", "--kube-context", "ingest-eks-staging")
    assert result.code == 0, result.stderr
    assert "warning: --kube-context ingest-eks-staging overrides prod's configured context ingest-eks-prod" in result.stderr
    assert "context ingest-eks-staging" in result.stderr


def test_drift_behind_helms_back_is_repaired_not_called_no_change(cli, bed):
    publish(bed, "ingest-core", "drift1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "drift1", "--yes").code == 0
    apps_api, _, _ = bed.apps_api()
    apps_api.patch_namespaced_deployment("ingest-core", NS, {"spec": {"template": {"spec": {"containers": [{"name": "ingest-core", "image": "busybox:hand-made"}]}}}})

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "drift1", "--yes")

    assert result.code == 0, result.stderr
    assert "the cluster differs from revision 1 (it runs busybox:hand-made); re-applying it" in result.stderr
    assert ":drift1@" in apps_api.read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image
