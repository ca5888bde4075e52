"""The release path against what a real cluster does to the team's charts: claims, scheduling, probes,
Secrets, volumes. Each state is named with its own reason within --grace (not at helm's --timeout),
and the release is rolled back; on the real helm 3 and helm 4.

The charts are ingest-kube-deployment's ingest-core chart with what the real ingest-broker chart has
(a claim of the team's `retained-gp2` class mounted by the pod, a readiness probe, env from the
`aws-keys` Secret), committed to this module's own fixture repo before each test. The cluster is the
emulator, which behaves as EKS for these states (see tests/test_kube_emulator_storage.py).
"""

from __future__ import annotations

import time

import pytest

from bed import NS, apply, history, publish
from manual_deploy import audit

CLAIM = "spreadsheet-storage-claim"
GRACE = "3s"
CHART = "apps/ingest-core/templates"
PULL_ALWAYS = "        imagePullPolicy: Always\n"
ENV = "        env:\n"


def chart(deploy_repo, *, container: str = "", env: str = "", pod: str = "", extra: str = "") -> None:
    """Commit ingest-core's chart with extra container lines, env entries, pod-spec lines and templates
    (none: as generated)."""
    base = deploy_repo.files[f"{CHART}/deployment.yaml"]
    assert PULL_ALWAYS in base and base.count(ENV) == 1
    deployment = base.replace(PULL_ALWAYS, PULL_ALWAYS + container).replace(ENV, ENV + env) + pod
    deploy_repo.commit_file(f"{CHART}/deployment.yaml", deployment, "ingest-core: chart variant for this test")
    deploy_repo.commit_file(f"{CHART}/extra.yaml", extra or "# nothing extra\n", "ingest-core: extra templates")


def claim(storage_class: str) -> str:
    return (f"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {CLAIM}\n"
            f"spec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: {storage_class}\n"
            f"  resources:\n    requests:\n      storage: 1Gi\n")


MOUNT = "        volumeMounts:\n        - name: data\n          mountPath: /data\n"
VOLUME = f"      volumes:\n      - name: data\n        persistentVolumeClaim:\n          claimName: {CLAIM}\n"
PROBE = ("        readinessProbe:\n          httpGet:\n            path: /health\n            port: 8080\n"
         "          initialDelaySeconds: 0\n          periodSeconds: 1\n")
SECRET_ENV = ("        - name: AWS_ACCESS_KEY_ID\n          valueFrom:\n"
              "            secretKeyRef:\n              name: aws-keys\n              key: AWS_ACCESS_KEY_ID\n")


def storage_class(bed, name: str, binding: str = "Immediate") -> None:
    """A StorageClass as the team's terraform makes `retained-gp2`."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    client.StorageV1Api(api).create_storage_class({
        "metadata": {"name": name}, "provisioner": "kubernetes.io/aws-ebs", "reclaimPolicy": "Retain",
        "volumeBindingMode": binding, "parameters": {"type": "gp2"}})


def first_good_revision(cli, bed, tag: str) -> None:
    publish(bed, "ingest-core", tag)
    result = apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes")
    assert result.code == 0, result.stderr


def failed_fast(cli, bed, tag: str):
    """apply of `tag` with a short grace and a long timeout: (result, seconds it took)."""
    publish(bed, "ingest-core", tag)
    started = time.monotonic()
    result = apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes", "--grace", GRACE, "--timeout", "120s")
    return result, time.monotonic() - started


def assert_rolled_back(bed, result, good: str) -> None:
    assert result.code == 1, result.stderr
    assert "rolled back" in result.stderr, result.stderr
    entries = history(bed, "ingest-core")
    assert entries[-1]["status"] == "deployed" and entries[-1]["revision"] > 2, entries
    assert audit.read()[-1]["result"] == "failed"
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    live = client.AppsV1Api(api).read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image
    assert f":{good}@" in live, live


def test_a_claim_of_an_unknown_storage_class_fails_within_grace_naming_the_claim(cli, bed, helm, deploy_repo):
    chart(deploy_repo)
    first_good_revision(cli, bed, "pvc-good")
    chart(deploy_repo, container=MOUNT, pod=VOLUME, extra=claim("retained-gp2"))

    result, took = failed_fast(cli, bed, "pvc-bad")

    assert_rolled_back(bed, result, "pvc-good")
    error = result.stderr.split("error: ", 1)[1]
    assert f"ProvisioningFailed in PersistentVolumeClaim {CLAIM}" in error, result.stderr
    assert 'Pending — storageclass "retained-gp2" not found' in error, result.stderr
    assert "next: create the StorageClass the claim names" in result.stderr
    assert "`manual-deploy apply --env prod --app ingest-core --tag pvc-bad`" in result.stderr
    assert took < 3 + 25, f"took {took:.0f}s, not grace + a few seconds: {result.stderr}"


def test_a_claim_of_a_known_storage_class_deploys(cli, bed, helm, deploy_repo):
    """helm 3's --wait waits for the claim to be Bound; helm 4's kstatus too."""
    storage_class(bed, "retained-gp2")
    chart(deploy_repo, container=MOUNT, pod=VOLUME, extra=claim("retained-gp2"))
    publish(bed, "ingest-core", "pvc-ok")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "pvc-ok", "--yes", "--grace", GRACE)

    assert result.code == 0, result.stderr
    assert history(bed, "ingest-core")[-1]["status"] == "deployed"
    claim_state = bed.kube.get("v1/persistentvolumeclaims", NS, CLAIM)
    assert claim_state["status"]["phase"] == "Bound"


def test_a_pod_that_does_not_fit_fails_with_the_schedulers_words(cli, bed, helm, deploy_repo):
    chart(deploy_repo)
    first_good_revision(cli, bed, "mem-good")
    bed.kube.set_node_allocatable(memory="2Gi")  # ingest-core requests 1.4Gi: the new pod cannot join the old one

    result, took = failed_fast(cli, bed, "mem-bad")

    assert_rolled_back(bed, result, "mem-good")
    assert "FailedScheduling in pod ingest-core-" in result.stderr, result.stderr
    assert "Insufficient memory" in result.stderr.split("error: ", 1)[1], result.stderr
    assert "next: the cluster cannot place the pod" in result.stderr
    assert took < 3 + 25, f"took {took:.0f}s: {result.stderr}"


def test_a_readiness_probe_that_never_passes_fails_with_the_probes_message(cli, bed, helm, deploy_repo):
    from manual_deploy_sandbox.kube import READINESS_PROBE_FAILED

    chart(deploy_repo, container=PROBE)
    first_good_revision(cli, bed, "probe-good")
    bed.kube.add_failure("*:probe-bad*", READINESS_PROBE_FAILED)

    result, took = failed_fast(cli, bed, "probe-bad")

    assert_rolled_back(bed, result, "probe-good")
    error = result.stderr.split("error: ", 1)[1]
    assert "Unhealthy in pod ingest-core-" in error, result.stderr
    assert "(Readiness probe failed: HTTP probe failed with statuscode: 503" in error
    assert "next: the app runs but its probe keeps failing" in result.stderr
    assert took < 3 + 25, f"took {took:.0f}s: {result.stderr}"


def test_a_missing_secret_key_fails_with_the_kubelets_words(cli, bed, helm, deploy_repo):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    client.CoreV1Api(api).create_namespaced_secret(NS, {"metadata": {"name": "aws-keys"}, "stringData": {"OTHER": "x"}})
    chart(deploy_repo)
    first_good_revision(cli, bed, "key-good")
    chart(deploy_repo, env=SECRET_ENV)

    result, took = failed_fast(cli, bed, "key-bad")

    assert_rolled_back(bed, result, "key-good")
    error = result.stderr.split("error: ", 1)[1]
    assert "CreateContainerConfigError in pod ingest-core-" in error, result.stderr
    assert f"couldn't find key AWS_ACCESS_KEY_ID in Secret {NS}/aws-keys" in error
    assert f"next: create the Secret or ConfigMap key the pod needs in {NS}" in result.stderr
    assert took < 3 + 25, f"took {took:.0f}s: {result.stderr}"


def test_a_volume_that_cannot_attach_fails_with_the_attach_error(cli, bed, helm, deploy_repo):
    from manual_deploy_sandbox.kube import MULTI_ATTACH

    storage_class(bed, "retained-gp2")
    chart(deploy_repo)
    first_good_revision(cli, bed, "vol-good")
    chart(deploy_repo, container=MOUNT, pod=VOLUME, extra=claim("retained-gp2"))
    bed.kube.add_volume_failure(CLAIM, MULTI_ATTACH)

    result, took = failed_fast(cli, bed, "vol-bad")

    assert_rolled_back(bed, result, "vol-good")
    error = result.stderr.split("error: ", 1)[1]
    assert "FailedAttachVolume in pod ingest-core-" in error, result.stderr
    assert "Multi-Attach error for volume" in error
    assert "next: the volume cannot attach" in result.stderr
    assert took < 3 + 25, f"took {took:.0f}s: {result.stderr}"


@pytest.mark.parametrize("helm", ["helm3"], indirect=True)
def test_a_busy_release_names_who_is_deploying_and_does_not_suggest_recover(cli, bed, helm, deploy_repo):
    """A pending-upgrade release under someone's live Lease is busy, not stuck."""
    from datetime import datetime, timezone

    from kubernetes import client, config

    from bed import release_secret_status

    chart(deploy_repo)
    first_good_revision(cli, bed, "busy1")
    api = config.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    release_secret_status(api, NS, "ingest-core", 1, "pending-upgrade")
    now = datetime.now(timezone.utc).replace(microsecond=1)
    client.CoordinationV1Api(api).create_namespaced_lease(NS, {
        "metadata": {"name": "manual-deploy-ingest-core", "annotations": {"manual-deploy.ebi-ait/reason": "INC-7"}},
        "spec": {"holderIdentity": "alice@laptop#41", "leaseDurationSeconds": 900, "acquireTime": now, "renewTime": now}})
    publish(bed, "ingest-core", "busy2")
    before = len(bed.kube.requests)

    for args in (("--env", "prod"), ("--env", "prod", "--yes")):
        result = cli("--config", bed.config, "apply", *args, "--app", "ingest-core", "--tag", "busy2")
        assert result.code == 3, result.stderr
        assert "alice@laptop#41 (INC-7)" in result.stderr, result.stderr
        assert "--recover" not in result.stderr, result.stderr
        assert "stuck" not in result.stderr, result.stderr
    assert [r["status"] for r in history(bed, "ingest-core")] == ["pending-upgrade"]
    lease = client.CoordinationV1Api(api).read_namespaced_lease("manual-deploy-ingest-core", NS)
    assert lease.spec.holder_identity == "alice@laptop#41"
    tried = [(r["method"], r["path"]) for r in bed.kube.requests[before:] if r["method"] in ("POST", "PUT", "PATCH", "DELETE")]
    assert tried == [("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")], tried  # --yes: its lock, refused


@pytest.mark.parametrize("helm", ["helm3"], indirect=True)
def test_while_helm_waits_the_progress_line_names_the_claim_and_why(cli, bed, helm, deploy_repo):
    """Grace longer than helm's timeout: the user sees what helm waits for every ≤ 10 s, and at the end
    the claim, its state and its last events; not "deployment rolled out" while the claim is stuck."""
    chart(deploy_repo)
    first_good_revision(cli, bed, "wait-good")
    chart(deploy_repo, container=MOUNT, pod=VOLUME, extra=claim("retained-gp2"))
    publish(bed, "ingest-core", "wait-bad")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "wait-bad", "--yes", "--grace", "10m", "--timeout", "14s")

    assert result.code == 1, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("  ingest-core: waiting for ")]
    assert progress, result.stderr
    assert progress[0].startswith(f'  ingest-core: waiting for PersistentVolumeClaim {CLAIM}: Pending — storageclass '
                                  f'"retained-gp2" not found (ProvisioningFailed, '), progress
    waited = result.stderr.split("not ready when helm gave up:\n", 1)[1]
    assert waited.startswith(f'    PersistentVolumeClaim {CLAIM}: Pending — storageclass "retained-gp2" not found'), waited
    assert 'Warning ProvisioningFailed: storageclass.storage.k8s.io "retained-gp2" not found' in waited
    assert "rolled out" not in result.stderr.split("✓ confirm", 1)[1]


def test_a_secret_volume_whose_secret_is_missing_fails_with_the_mount_error(cli, bed, helm, deploy_repo):
    """The real ingest-broker chart mounts Secret api-keys; a namespace without it never starts the pod."""
    chart(deploy_repo)
    first_good_revision(cli, bed, "mnt-good")
    chart(deploy_repo, container="        volumeMounts:\n        - name: secret-volume\n          mountPath: /etc/secrets\n",
          pod="      volumes:\n      - name: secret-volume\n        secret:\n          secretName: api-keys\n")

    result, took = failed_fast(cli, bed, "mnt-bad")

    assert_rolled_back(bed, result, "mnt-good")
    error = result.stderr.split("error: ", 1)[1]
    assert "FailedMount in pod ingest-core-" in error, result.stderr
    assert 'MountVolume.SetUp failed for volume "secret-volume" : secret "api-keys" not found' in error
    assert f"next: a volume cannot be mounted: create the Secret or ConfigMap (or the key) it names in {NS}" in result.stderr
    assert took < 3 + 25, f"took {took:.0f}s: {result.stderr}"
