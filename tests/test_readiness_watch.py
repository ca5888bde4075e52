"""ReleaseWatch against the emulated apiserver, through the real kubernetes ApiClient.

The release is what helm stored: a release Secret written the way helm writes it (and once by the
real helm 3), so the watch reads exactly what a deploy would.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import time

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kconfig

from bed import HELMS
from manual_deploy.readiness import ReleaseWatch
from manual_deploy_sandbox.kube import KubeEmulator
from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

NS = "prod-environment"
TOKEN = "readiness-token-0123456789"
CLAIM = "spreadsheet-storage-claim"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster(tmp_path):
    with KubeEmulator(token=TOKEN, pod_start_delay=0.2, progress_deadline=30.0) as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts(kube.url), token=TOKEN)
        api = kconfig.new_client_from_config(config_file=str(kubeconfig), context="ingest-eks-prod", persist_config=False)
        kube.kubeconfig = kubeconfig
        yield kube, api
        api.close()


def deployment(name: str, image: str, claim: str | None = None) -> dict:
    labels = {"app": name}
    pod_spec = {"containers": [{"name": "app", "image": image, "resources": {"requests": {"memory": "256Mi"}}}]}
    if claim:
        pod_spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}


def claim(name: str = CLAIM, storage_class: str = "retained-gp2") -> dict:
    """retained-gp2: the team's class, which a fresh cluster (the emulator's default: EKS's gp2 only) lacks."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": "1Gi"}}}}


def node_port(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def write_release(api, release: str, revision: int, docs: list[dict], hooks: list[dict] = ()) -> None:
    """A release Secret as helm 3/4 store it: base64(base64(gzip(JSON))) under data.release."""
    manifest = "".join(f"---\n# Source: {release}/templates/{d['kind'].lower()}.yaml\n{yaml.safe_dump(d)}" for d in docs)
    hooks = [{"name": h["metadata"]["name"], "kind": h["kind"], "manifest": yaml.safe_dump(h), "events": ["pre-upgrade"]}
             for h in hooks]
    body = {"name": release, "namespace": NS, "version": revision, "manifest": manifest, "hooks": hooks,
            "info": {"status": "pending-upgrade" if revision > 1 else "pending-install"}}
    encoded = base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()
    client.CoreV1Api(api).create_namespaced_secret(NS, {
        "metadata": {"name": f"sh.helm.release.v1.{release}.v{revision}",
                     "labels": {"owner": "helm", "name": release, "version": str(revision), "status": body["info"]["status"]}},
        "type": "helm.sh/release.v1", "data": {"release": base64.b64encode(encoded.encode()).decode()}})


def apply(api, docs: list[dict]) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for doc in docs:
        create = {"Deployment": apps.create_namespaced_deployment, "Service": core.create_namespaced_service,
                  "PersistentVolumeClaim": core.create_namespaced_persistent_volume_claim}[doc["kind"]]
        create(NS, doc)


def object_event(api, kind: str, name: str, reason: str, message: str, count: int = 1) -> str:
    """An Event as a controller writes it (here: what the emulator has no controller for)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    made = client.CoreV1Api(api).create_namespaced_event(NS, {
        "metadata": {"generateName": f"{name}."}, "reason": reason, "message": message, "type": "Warning",
        "count": count, "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "service-controller"},
        "involvedObject": {"apiVersion": "v1", "kind": kind, "name": name, "namespace": NS}})
    return made.metadata.name


def until(watch: ReleaseWatch, predicate, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while True:
        result = watch.check()
        if predicate(result):
            return result
        assert time.monotonic() < deadline, f"never happened; last look: {watch.progress()}"
        time.sleep(0.2)


def test_until_helm_writes_the_new_revision_the_watch_says_so(cluster):
    kube, api = cluster
    watch = ReleaseWatch(api, NS, "ingest-broker", after_revision=3, grace_s=60)
    assert watch.waited_for() is None  # no look yet
    assert watch.progress() == "waiting for helm to write revision 4"
    assert not watch.check().all_ready
    write_release(api, "ingest-broker", 3, [node_port("ingest-broker-service")])  # the revision before this deploy
    watch.check()
    assert watch.progress() == watch.waited_for() == "waiting for helm to write revision 4"
    assert watch.pods_not_running("b1") == ["deployment ingest-broker is missing"]

    hook_job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "db-migrate"},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]}}}}
    hook_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hook-script"}}
    write_release(api, "ingest-broker", 4, [node_port("ingest-broker-service"), claim()], hooks=[hook_job, hook_map])
    result = watch.check()
    assert result.revision == 4 and [(s.label, s.summary) for s in result.states] == [
        ("Service ingest-broker-service", "not created yet"), (f"PersistentVolumeClaim {CLAIM}", "not created yet"),
        ("Job db-migrate", "hook not running")]  # hooks: only Jobs have a state to watch
    assert watch.progress() == (f"waiting for Service ingest-broker-service: not created yet; "
                                f"PersistentVolumeClaim {CLAIM}: not created yet")


def test_a_claim_that_never_binds_is_named_and_is_the_failure_not_the_pod_waiting_for_it(cluster):
    """The incident: helm --wait hung on a claim of a StorageClass the cluster does not have.

    The emulator behaves as EKS does: the PV controller reports ProvisioningFailed on the claim, the
    scheduler leaves the pod that mounts it Pending (FailedScheduling: unbound PersistentVolumeClaims).
    The pod's state is seen first, yet once grace is out the failure named is the claim: the cause.
    """
    kube, api = cluster
    docs = [claim(), node_port("ingest-broker-service"), deployment("ingest-broker", "quay.io/ebi-ait/ingest-broker:b1", CLAIM)]
    write_release(api, "ingest-broker", 1, docs)
    apply(api, docs)
    clock = FakeClock()
    watch = ReleaseWatch(api, NS, "ingest-broker", after_revision=None, grace_s=60, clock=clock)
    result = until(watch, lambda r: r.pods and r.pods[0].failing == "FailedScheduling" and r.states[0].failing)

    assert not result.all_ready and result.failure is None
    assert result.states[1].ready and result.states[1].summary.startswith("NodePort 3")
    progress = watch.progress()
    assert progress.startswith(f'waiting for PersistentVolumeClaim {CLAIM}: Pending — storageclass "retained-gp2" not found '
                               f'(ProvisioningFailed, '), progress
    assert "Deployment ingest-broker: 0 of 1 updated replicas available" in progress
    assert "FailedScheduling: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims" in progress
    assert watch.pods_not_running("b1") == []
    wrong = watch.pods_not_running("b2")
    assert len(wrong) == 1 and wrong[0].startswith("ingest-broker-") and wrong[0].endswith(" runs quay.io/ebi-ait/ingest-broker:b1")
    waited = watch.waited_for()
    assert waited.startswith(f'PersistentVolumeClaim {CLAIM}: Pending — storageclass "retained-gp2" not found'), waited
    assert 'Warning ProvisioningFailed: storageclass.storage.k8s.io "retained-gp2" not found' in waited

    clock.now += 60
    failure = watch.check().failure
    assert (failure.kind, failure.name, failure.reason) == ("PersistentVolumeClaim", CLAIM, "ProvisioningFailed")


def test_a_failing_state_fails_only_after_it_lasted_the_grace_period(cluster):
    """Driven by hand: a LoadBalancer Service whose cloud provider refuses (the emulator provisions none)."""
    kube, api = cluster
    lb = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingest-ui-lb"},
          "spec": {"type": "LoadBalancer", "selector": {"app": "ingest-ui"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    write_release(api, "ingest-ui", 1, [lb])
    apply(api, [lb])
    clock = FakeClock()
    watch = ReleaseWatch(api, NS, "ingest-ui", grace_s=30, clock=clock)
    assert watch.check().states[0].summary == "no load balancer address yet"
    refused = "Error syncing load balancer: failed to ensure load balancer: TooManyLoadBalancers"
    event = object_event(api, "Service", "ingest-ui-lb", "SyncLoadBalancerFailed", refused)
    assert watch.check().failure is None
    clock.now += 29.9
    assert watch.check().failure is None
    client.CoreV1Api(api).delete_namespaced_event(event, NS)  # the reason went away: the grace period starts again
    assert watch.check().failure is None
    object_event(api, "Service", "ingest-ui-lb", "SyncLoadBalancerFailed", refused)
    clock.now += 1
    assert watch.check().failure is None
    clock.now += 29.9
    assert watch.check().failure is None
    clock.now += 0.1
    failure = watch.check().failure
    assert (failure.kind, failure.name, failure.reason) == ("Service", "ingest-ui-lb", "SyncLoadBalancerFailed")
    assert failure.report() == (f"Service ingest-ui-lb: SyncLoadBalancerFailed {refused}\n  recent events:\n"
                                f"    Warning SyncLoadBalancerFailed: {refused}")


def test_a_pod_that_cannot_pull_its_image_fails_after_grace_with_its_events(cluster):
    kube, api = cluster
    kube.add_failure("*:broken", "ImagePullBackOff")
    docs = [deployment("ingest-broker", "quay.io/ebi-ait/ingest-broker:broken")]
    write_release(api, "ingest-broker", 2, docs)
    apply(api, docs)
    clock = FakeClock()
    watch = ReleaseWatch(api, NS, "ingest-broker", after_revision=1, grace_s=5, clock=clock)
    result = until(watch, lambda r: any(p.failing for p in r.pods))
    assert result.failure is None
    pod = result.pods[0]
    assert pod.summary == 'ImagePullBackOff (container app): Back-off pulling image "quay.io/ebi-ait/ingest-broker:broken"'
    assert watch.progress() == f"waiting for Deployment ingest-broker: 0 of 1 updated replicas available (pod {pod.name}: {pod.summary})"

    clock.now += 5
    failure = watch.check().failure
    assert (failure.kind, failure.name, failure.reason, failure.container) == ("Pod", pod.name, "ImagePullBackOff", "app")
    assert any("Failed to pull image" in line for line in failure.events)
    assert failure.report().startswith(f"pod {pod.name} container app: ImagePullBackOff Back-off pulling image")


def test_a_crash_looping_pods_failure_carries_its_log_tail(cluster):
    kube, api = cluster
    kube.add_failure("*:crashy", "CrashLoopBackOff", log="starting broker\nKeyError: 'AWS_ACCESS_KEY_ID'\n")
    docs = [deployment("ingest-broker", "quay.io/ebi-ait/ingest-broker:crashy")]
    write_release(api, "ingest-broker", 1, docs)
    apply(api, docs)
    watch = ReleaseWatch(api, NS, "ingest-broker", grace_s=0)
    failure = until(watch, lambda r: r.failure is not None).failure
    assert failure.reason == "CrashLoopBackOff"
    assert failure.logs == ["starting broker", "KeyError: 'AWS_ACCESS_KEY_ID'"]


class Forbidding:
    """The real ApiClient, except that PersistentVolumeClaims answer 403 (as RBAC without that verb does)."""

    def __init__(self, real) -> None:
        self.real = real

    def param_serialize(self, *args, **kwargs):
        return self.real.param_serialize(*args, **kwargs)

    def call_api(self, method, url, *args, **kwargs):
        if "/persistentvolumeclaims" not in url:
            return self.real.call_api(method, url, *args, **kwargs)

        class Answer:
            status = 403

            @staticmethod
            def read() -> bytes:
                return b'{"message": "forbidden for Bearer ' + TOKEN.encode() + b'"}'

        return Answer()


def test_a_resource_that_cannot_be_read_does_not_hide_the_others(cluster):
    kube, api = cluster
    docs = [claim(), node_port("ingest-broker-service")]
    write_release(api, "ingest-broker", 1, docs)
    apply(api, docs)
    watch = ReleaseWatch(Forbidding(api), NS, "ingest-broker")
    result = watch.check()
    assert [(s.ready, s.summary[:9]) for s in result.states] == [(False, "cannot re"), (True, "NodePort ")]
    assert result.states[0].summary == "cannot read (HTTP 403)"
    assert TOKEN not in (watch.progress() + watch.waited_for())


class Counting:
    """The real ApiClient, counting the requests it is asked to send."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, 0

    def param_serialize(self, *args, **kwargs):
        return self.real.param_serialize(*args, **kwargs)

    def call_api(self, *args, **kwargs):
        self.calls += 1
        return self.real.call_api(*args, **kwargs)


def test_an_api_that_stops_answering_is_said_not_raised(cluster):
    """The watch only speeds up a failure: when it cannot look, helm's own wait decides. And when
    nothing answers, it asks once per look, not once per resource (each could take the connect timeout)."""
    kube, api = cluster
    docs = [claim(), node_port("ingest-broker-service"), deployment("ingest-broker", "quay.io/ebi-ait/ingest-broker:b1")]
    write_release(api, "ingest-broker", 1, docs)
    counting = Counting(api)
    watch = ReleaseWatch(counting, NS, "ingest-broker")
    watch.check()
    api.configuration.retries = 0
    kube.stop()
    counting.calls = 0
    result = watch.check()
    assert counting.calls == 1
    assert result.failure is None and not result.all_ready
    assert [s.summary for s in result.states] == ["cannot read (no answer: NewConnectionError)"] * 3
    assert watch.pods_not_running("b1") == ["deployment ingest-broker is missing"]


@pytest.mark.parametrize("helm_binary", ["helm3", "helm4"])
def test_what_real_helm_stored_is_what_the_watch_watches(cluster, tmp_path, helm_binary):
    kube, api = cluster
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: ingest-broker\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("image: quay.io/ebi-ait/ingest-broker:b1\n")
    docs = [claim(storage_class="gp2"), node_port("ingest-broker-service"), deployment("ingest-broker", "IMAGE", CLAIM),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-keys"}, "stringData": {"KEY": "x"}}]
    template = "---\n".join(yaml.safe_dump(d) for d in docs).replace("IMAGE", "{{ .Values.image }}")
    (chart / "templates" / "all.yaml").write_text(template)

    def helm(*args: str) -> None:
        subprocess.run([str(HELMS[helm_binary]), *args, "-n", NS, "--kube-context", "ingest-eks-prod",
                        "--kubeconfig", str(kube.kubeconfig)], check=True, capture_output=True, timeout=120)

    helm("upgrade", "--install", "ingest-broker", str(chart))
    watch = ReleaseWatch(api, NS, "ingest-broker", after_revision=None)
    result = until(watch, lambda r: r.all_ready)
    assert result.revision == 1
    # helm stores the manifest in its install order (Secret, PVC, Service, Deployment), whatever the template's order
    assert [(s.label, s.ready, s.summary[:8]) for s in result.states] == [
        ("Secret aws-keys", True, "created "), (f"PersistentVolumeClaim {CLAIM}", True, "Bound to"),
        ("Service ingest-broker-service", True, "NodePort"), ("Deployment ingest-broker", True, "rolled o")]
    assert watch.progress() == "all 4 resources of ingest-broker revision 1 ready"

    helm("upgrade", "ingest-broker", str(chart), "--set", "image=quay.io/ebi-ait/ingest-broker:b2")
    after = ReleaseWatch(api, NS, "ingest-broker", after_revision=1)
    until(after, lambda r: r.revision == 2 and all(s.ready for s in r.states if s.kind == "Deployment")
          and after.pods_not_running("b2") == [])
    assert after.pods_not_running("b1") != []


def test_a_pod_the_scheduler_cannot_place_is_named_with_the_schedulers_words(cluster):
    kube, api = cluster
    kube.add_failure("*:huge", "ProgressDeadlineExceeded")  # the emulator's unschedulable pod
    docs = [deployment("ingest-broker", "quay.io/ebi-ait/ingest-broker:huge")]
    write_release(api, "ingest-broker", 1, docs)
    apply(api, docs)
    watch = ReleaseWatch(api, NS, "ingest-broker", grace_s=0)
    failure = until(watch, lambda r: r.failure is not None).failure
    assert (failure.kind, failure.reason) == ("Pod", "FailedScheduling")
    assert failure.message.startswith("0/1 nodes are available: 1 Insufficient cpu.")
    assert failure.report().startswith(f"pod {failure.name}: FailedScheduling 0/1 nodes are available")
    assert any(line.startswith("Warning FailedScheduling: 0/1 nodes") for line in failure.events)


def cronjob(name: str, image: str, *, suspend: bool = False) -> dict:
    """As ingest-kube-deployment's cron-jobs/update-project-catalogue chart makes one."""
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "0 3 * * *", "suspend": suspend, "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": {
                "backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
                                                         "containers": [{"name": "update", "image": image}]}}}}}}


def started_by(api, made, job: str) -> None:
    """A Job from the CronJob's template, owned by it, as the CronJob controller starts one at its schedule."""
    client.BatchV1Api(api).create_namespaced_job(NS, {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "controller": True,
                                                         "name": made.metadata.name, "uid": made.metadata.uid}]},
        "spec": client.ApiClient().sanitize_for_serialization(made.spec.job_template.spec)})


def test_a_failed_job_a_cronjob_started_is_named_in_progress_and_fails_after_grace(cluster):
    kube, api = cluster
    kube.add_failure("*:bad-catalogue", "CrashLoopBackOff")
    doc = cronjob("update-project-catalogue", "quay.io/ebi-ait/ingest-catalogue:bad-catalogue")
    write_release(api, "update-project-catalogue", 1, [doc])
    made = client.BatchV1Api(api).create_namespaced_cron_job(NS, doc)
    clock = FakeClock()
    watch = ReleaseWatch(api, NS, "update-project-catalogue", grace_s=5, clock=clock)
    look = watch.check()
    assert look.all_ready and look.states[0].summary == "scheduled 0 3 * * *"

    started_by(api, made, "update-project-catalogue-29012345")
    look = until(watch, lambda r: any(s.failing for s in r.states))
    assert look.failure is None
    assert watch.progress() == ("waiting for CronJob update-project-catalogue: job update-project-catalogue-29012345 "
                                "failed — BackoffLimitExceeded: Job has reached the specified backoff limit")

    clock.now += 5
    failure = watch.check().failure
    assert (failure.kind, failure.name, failure.reason, failure.owned) == (
        "CronJob", "update-project-catalogue", "BackoffLimitExceeded", "job/update-project-catalogue-29012345")


def test_a_suspended_cronjob_fails_after_grace(cluster):
    kube, api = cluster
    doc = cronjob("update-project-catalogue", "quay.io/ebi-ait/ingest-catalogue:c1", suspend=True)
    write_release(api, "update-project-catalogue", 1, [doc])
    client.BatchV1Api(api).create_namespaced_cron_job(NS, doc)
    clock = FakeClock()
    watch = ReleaseWatch(api, NS, "update-project-catalogue", grace_s=5, clock=clock)
    assert watch.check().states[0].failing == "Suspended"
    clock.now += 5
    assert watch.check().failure.reason == "Suspended"


def ingress(name: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [{
                "path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}}


def test_an_ingress_without_an_address_names_the_controllers_warning_after_grace(cluster):
    """The Warning the AWS load-balancer controller writes: injected into the emulator, or written by hand
    where the emulator has no Ingress controller."""
    kube, api = cluster
    built = "Failed build model due to ingress: prod-environment/ingest-ui: none certificate found"
    controller = hasattr(kube, "add_ingress_failure")
    if controller:
        kube.add_ingress_failure("ingest-ui", "FailedBuildModel", built)
    doc = ingress("ingest-ui")
    write_release(api, "ingest-ui", 1, [doc])
    client.NetworkingV1Api(api).create_namespaced_ingress(NS, doc)
    clock = FakeClock()
    watch = ReleaseWatch(api, NS, "ingest-ui", grace_s=5, clock=clock)
    if not controller:
        assert watch.check().states[0].summary == "waiting for an address"
        object_event(api, "Ingress", "ingest-ui", "FailedBuildModel", built)
    until(watch, lambda r: r.states[0].failing == "FailedBuildModel")
    assert watch.progress().startswith(f"waiting for Ingress ingest-ui: no address — {built} (FailedBuildModel, ")
    clock.now += 5
    failure = watch.check().failure
    assert (failure.kind, failure.name, failure.reason, failure.message) == ("Ingress", "ingest-ui", "FailedBuildModel", built)
