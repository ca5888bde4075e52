"""The kube emulator's not-ready states: storage, scheduling, probes, env sources, volume attachment.

These are the states the product's diagnostics explain, so each is checked for the real objects,
conditions and Event texts (through the kubernetes client), and for what `helm upgrade --install
--wait` does with them (helm 3 and 4): it succeeds once a claim is bound and a pod ready, and times
out otherwise. One plain-HTTP emulator serves the module (with a second, Immediate StorageClass);
tests that resize the node start their own.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from manual_deploy_sandbox.kube import KubeEmulator, ingest_contexts, write_kubeconfig

REPO = Path(__file__).resolve().parents[1]
CONTEXT = "ingest-eks-prod"
RETAINED = {"name": "retained-gp2", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}
_names = itertools.count(1)


@pytest.fixture(scope="module")
def kube():
    emulator = KubeEmulator(tls=False, pod_start_delay=0.2, progress_deadline=1.0,
                            storage_classes=["gp2", RETAINED]).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _client(emulator: KubeEmulator, path: Path):
    kubeconfig = write_kubeconfig(path, ingest_contexts(emulator.url))
    return kubeconfig, config.new_client_from_config(config_file=str(kubeconfig), context=CONTEXT)


@pytest.fixture(scope="module")
def kubeconfig_and_client(kube, tmp_path_factory):
    kubeconfig, api = _client(kube, tmp_path_factory.mktemp("kube") / "config")
    yield kubeconfig, api
    api.close()


@pytest.fixture
def core(kubeconfig_and_client):
    return client.CoreV1Api(kubeconfig_and_client[1])


@pytest.fixture
def apps(kubeconfig_and_client):
    return client.AppsV1Api(kubeconfig_and_client[1])


def new_namespace(core) -> str:
    name = f"s{next(_names)}-{os.getpid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture
def ns(core) -> str:
    return new_namespace(core)


def claim(name: str, storage_class: str | None = None) -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def deployment(name: str, image: str = "example.org/app:1", *, claim_name: str | None = None, replicas: int = 1,
               **container) -> dict:
    containers = [{"name": "app", "image": image, **container}]
    spec = {"containers": containers}
    if claim_name:
        containers[0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def wait_for(predicate, timeout: float = 8.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def events(core, ns: str, name: str, kind: str | None = None) -> dict:
    """reason -> Event for one object (the newest per reason)."""
    selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
    return {e.reason: e for e in core.list_namespaced_event(ns, field_selector=selector).items}


def pod_of(core, ns: str, app: str):
    pods = core.list_namespaced_pod(ns, label_selector=f"app={app}").items
    return pods[0] if pods else None


def condition(pod, kind: str):
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


# ------------------------------------------------------------------------------------------- storage


def test_storage_classes_and_volumes_are_served_like_eks(kube, core, kubeconfig_and_client):
    storage = client.StorageV1Api(kubeconfig_and_client[1])
    classes = {sc.metadata.name: sc for sc in storage.list_storage_class().items}
    gp2 = classes["gp2"]
    assert (gp2.provisioner, gp2.reclaim_policy, gp2.volume_binding_mode) == (
        "kubernetes.io/aws-ebs", "Delete", "WaitForFirstConsumer")
    assert gp2.metadata.annotations == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (classes["retained-gp2"].reclaim_policy, classes["retained-gp2"].volume_binding_mode) == (
        "Retain", "Immediate")
    assert not (classes["retained-gp2"].metadata.annotations or {})
    discovery = {r.name: r for r in storage.get_api_resources().resources}
    assert discovery["storageclasses"].short_names == ["sc"] and not discovery["storageclasses"].namespaced
    core_resources = {r.name: r for r in core.get_api_resources().resources}
    assert core_resources["persistentvolumes"].short_names == ["pv"] and "persistentvolumes/status" in core_resources
    node = core.read_node("sandbox-node")
    assert node.status.allocatable["cpu"] == "7910m" and node.status.capacity["cpu"] == "8"


def test_default_class_waits_for_first_consumer_then_binds_and_deletes(core, apps, ns):
    core.create_namespaced_persistent_volume_claim(ns, claim("data"))
    pvc = core.read_namespaced_persistent_volume_claim("data", ns)
    assert pvc.spec.storage_class_name == "gp2" and pvc.status.phase == "Pending"
    assert pvc.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    waiting = wait_for(lambda: events(core, ns, "data").get("WaitForFirstConsumer"))
    assert (waiting.type, waiting.message, waiting.source.component, waiting.involved_object.kind) == (
        "Normal", "waiting for first consumer to be created before binding", "persistentvolume-controller",
        "PersistentVolumeClaim")
    assert core.read_namespaced_persistent_volume_claim("data", ns).status.phase == "Pending"

    apps.create_namespaced_deployment(ns, deployment("db", claim_name="data"))
    bound = wait_for(lambda: (c := core.read_namespaced_persistent_volume_claim("data", ns)).status.phase == "Bound"
                     and c)
    uid = bound.metadata.uid
    assert bound.spec.volume_name == f"pvc-{uid}"
    assert bound.status.capacity == {"storage": "5Gi"} and bound.status.access_modes == ["ReadWriteOnce"]
    annotations = bound.metadata.annotations
    assert annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert annotations["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert annotations["volume.kubernetes.io/storage-provisioner"] == "kubernetes.io/aws-ebs"
    assert annotations["volume.kubernetes.io/selected-node"] == "sandbox-node"
    pv = core.read_persistent_volume(f"pvc-{uid}")
    assert (pv.spec.claim_ref.name, pv.spec.claim_ref.namespace, pv.spec.claim_ref.uid) == ("data", ns, uid)
    assert (pv.spec.persistent_volume_reclaim_policy, pv.spec.storage_class_name, pv.status.phase) == (
        "Delete", "gp2", "Bound")
    assert pv.spec.capacity == {"storage": "5Gi"}
    provisioned = events(core, ns, "data")["ProvisioningSucceeded"]
    assert provisioned.message == f"Successfully provisioned volume pvc-{uid} using kubernetes.io/aws-ebs"
    wait_for(lambda: (pod := pod_of(core, ns, "db")) and condition(pod, "Ready").status == "True")

    core.delete_namespaced_persistent_volume_claim("data", ns)
    terminating = core.read_namespaced_persistent_volume_claim("data", ns)  # in use: pvc-protection holds it
    assert terminating.metadata.deletion_timestamp is not None
    apps.delete_namespaced_deployment("db", ns)
    wait_for(lambda: not core.list_namespaced_persistent_volume_claim(ns).items)
    wait_for(lambda: f"pvc-{uid}" not in {v.metadata.name for v in core.list_persistent_volume().items})


def test_immediate_class_binds_without_a_pod_and_retain_releases(core, ns):
    core.create_namespaced_persistent_volume_claim(ns, claim("keep", "retained-gp2"))
    bound = wait_for(lambda: (c := core.read_namespaced_persistent_volume_claim("keep", ns)).status.phase == "Bound"
                     and c)
    name = bound.spec.volume_name
    assert core.read_persistent_volume(name).spec.persistent_volume_reclaim_policy == "Retain"
    core.delete_namespaced_persistent_volume_claim("keep", ns)
    wait_for(lambda: core.read_persistent_volume(name).status.phase == "Released")


def test_missing_class_is_retried_and_its_pod_is_unschedulable(core, apps, ns):
    core.create_namespaced_persistent_volume_claim(ns, claim("fast", "io2-missing"))
    first = wait_for(lambda: events(core, ns, "fast").get("ProvisioningFailed"))
    assert (first.type, first.message, first.source.component) == (
        "Warning", 'storageclass.storage.k8s.io "io2-missing" not found', "persistentvolume-controller")
    apps.create_namespaced_deployment(ns, deployment("fast", claim_name="fast"))
    pod = wait_for(lambda: (p := pod_of(core, ns, "fast")) and condition(p, "PodScheduled") and p)
    scheduled = condition(pod, "PodScheduled")
    message = ("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes "
               "are available: 1 Preemption is not helpful for scheduling.")
    assert (pod.status.phase, scheduled.status, scheduled.reason, scheduled.message) == (
        "Pending", "False", "Unschedulable", message)
    assert pod.spec.node_name is None
    failed = wait_for(lambda: events(core, ns, pod.metadata.name, "Pod").get("FailedScheduling"))
    assert (failed.type, failed.message, failed.source.component) == ("Warning", message, "default-scheduler")
    again = wait_for(lambda: (e := events(core, ns, "fast")["ProvisioningFailed"]).count >= 3 and e, timeout=7)
    assert again.metadata.name == first.metadata.name and again.last_timestamp > first.first_timestamp
    assert core.read_namespaced_persistent_volume_claim("fast", ns).status.phase == "Pending"
    assert apps.read_namespaced_deployment("fast", ns).status.available_replicas is None


def test_claim_without_class_and_no_default_fails_binding(core, ns):
    core.create_namespaced_persistent_volume_claim(ns, claim("none", ""))
    event = wait_for(lambda: events(core, ns, "none").get("FailedBinding"))
    assert (event.type, event.message) == (
        "Normal", "no persistent volumes available for this claim and no storage class is set")


def test_pod_with_a_missing_claim_waits_for_it(core, apps, ns):
    apps.create_namespaced_deployment(ns, deployment("orphan", claim_name="later"))
    pod = wait_for(lambda: (p := pod_of(core, ns, "orphan")) and condition(p, "PodScheduled") and p)
    message = ('0/1 nodes are available: persistentvolumeclaim "later" not found. preemption: 0/1 nodes are '
               "available: 1 Preemption is not helpful for scheduling.")
    assert condition(pod, "PodScheduled").message == message
    assert wait_for(lambda: events(core, ns, pod.metadata.name).get("FailedScheduling")).message == message
    core.create_namespaced_persistent_volume_claim(ns, claim("later", "retained-gp2"))
    wait_for(lambda: condition(core.read_namespaced_pod(pod.metadata.name, ns), "Ready").status == "True")
    assert "Scheduled" in events(core, ns, pod.metadata.name)


@pytest.mark.parametrize("mode", ["FailedAttachVolume", "Multi-Attach"])
def test_volume_attach_failure_keeps_the_pod_creating(kube, core, apps, ns, mode):
    kube.add_volume_failure(f"stuck-{mode.lower()}*", mode)
    name = f"stuck-{mode.lower()}"
    core.create_namespaced_persistent_volume_claim(ns, claim(name, "retained-gp2"))
    apps.create_namespaced_deployment(ns, deployment("stuck", claim_name=name))
    pod = wait_for(lambda: (p := pod_of(core, ns, "stuck")) and p.spec.node_name and p)
    pv = wait_for(lambda: core.read_namespaced_persistent_volume_claim(name, ns).spec.volume_name)
    story = wait_for(lambda: (e := events(core, ns, pod.metadata.name)).get("FailedMount") and e, timeout=8)
    attach = story["FailedAttachVolume"]
    assert attach.type == "Warning" and attach.source.component == "attachdetach-controller"
    if mode == "Multi-Attach":
        assert attach.message == (f'Multi-Attach error for volume "{pv}" Volume is already exclusively attached to '
                                  "one node and can't be attached to another")
    else:
        assert attach.message.startswith(f'AttachVolume.Attach failed for volume "{pv}" : rpc error: code = '
                                         'Internal desc = Could not attach volume "vol-0')
        assert attach.message.endswith("failed, expected device to be attached but was attaching")
    mount = story["FailedMount"]
    assert mount.type == "Warning" and mount.source.component == "kubelet"
    assert mount.message.startswith("Unable to attach or mount volumes: unmounted volumes=[data], unattached "
                                    "volumes=[data kube-api-access-")
    assert mount.message.endswith("]: timed out waiting for the condition")
    pod = core.read_namespaced_pod(pod.metadata.name, ns)
    assert pod.status.phase == "Pending" and condition(pod, "PodScheduled").status == "True"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert wait_for(lambda: events(core, ns, pod.metadata.name)["FailedAttachVolume"].count >= 2)


# -------------------------------------------------------------------------------------------- scheduler


def test_insufficient_memory_on_a_shrunken_node(tmp_path):
    with KubeEmulator(tls=False, pod_start_delay=0.1, namespaces=["small"]) as small:
        small.set_node_allocatable(memory="1Gi")
        _, api = _client(small, tmp_path / "config")
        try:
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            assert core.read_node("sandbox-node").status.allocatable["memory"] == "1Gi"
            apps.create_namespaced_deployment("small", deployment(
                "big", replicas=2, resources={"requests": {"memory": "600Mi", "cpu": "100m"}}))
            wait_for(lambda: apps.read_namespaced_deployment("big", "small").status.available_replicas == 1)
            pods = core.list_namespaced_pod("small").items
            waiting = [p for p in pods if not p.spec.node_name]
            assert len(pods) == 2 and len(waiting) == 1
            message = ("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No "
                       "preemption victims found for incoming pod.")
            pod = wait_for(lambda: (p := core.read_namespaced_pod(waiting[0].metadata.name, "small")).status.conditions
                           and p)
            scheduled = condition(pod, "PodScheduled")
            assert (scheduled.status, scheduled.reason, scheduled.message) == ("False", "Unschedulable", message)
            assert pod.status.qos_class == "Burstable"
            event = wait_for(lambda: events(core, "small", pod.metadata.name).get("FailedScheduling"))
            assert (event.type, event.message, event.source.component) == ("Warning", message, "default-scheduler")
            status = apps.read_namespaced_deployment("big", "small").status
            assert (status.ready_replicas, status.unavailable_replicas) == (1, 1)
            small.set_node_allocatable(memory="2Gi")  # the scheduler retries: now it fits
            wait_for(lambda: apps.read_namespaced_deployment("big", "small").status.available_replicas == 2)
        finally:
            api.close()


def test_insufficient_cpu(core, apps, ns):
    apps.create_namespaced_deployment(ns, deployment("greedy", resources={"requests": {"cpu": "16"}}))
    pod = wait_for(lambda: (p := pod_of(core, ns, "greedy")) and condition(p, "PodScheduled") and p)
    assert condition(pod, "PodScheduled").message == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims "
        "found for incoming pod.")


# ----------------------------------------------------------------------------------------------- kubelet


def test_readiness_probe_failure(kube, core, apps, ns):
    kube.add_failure("example.org/unready:*", "ReadinessProbeFailed")
    dep = deployment("unready", "example.org/unready:1",
                     readinessProbe={"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1})
    containers = dep["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "tcp", "image": "example.org/unready:2",
                       "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 1}})
    containers.append({"name": "plain", "image": "example.org/unready:3"})  # no probe: ready whatever the mode
    apps.create_namespaced_deployment(ns, dep)
    pod = wait_for(lambda: (p := pod_of(core, ns, "unready")) and p.status.phase == "Running" and p)
    ready = condition(pod, "Ready")
    assert (ready.status, ready.reason, ready.message) == (
        "False", "ContainersNotReady", "containers with unready status: [app tcp]")
    assert condition(pod, "ContainersReady").message == "containers with unready status: [app tcp]"
    statuses = {s.name: s for s in pod.status.container_statuses}
    assert statuses["app"].state.running and statuses["app"].started and not statuses["app"].ready
    assert statuses["plain"].ready
    name = pod.metadata.name
    probe = wait_for(lambda: (e := events(core, ns, name).get("Unhealthy")) and e.count >= 2 and e, timeout=6)
    everything = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name},reason=Unhealthy").items
    by_path = {e.involved_object.field_path: e.message for e in everything}
    assert by_path["spec.containers{app}"] == "Readiness probe failed: HTTP probe failed with statuscode: 503"
    assert by_path["spec.containers{tcp}"] == (
        f"Readiness probe failed: dial tcp {pod.status.pod_ip}:5432: connect: connection refused")
    assert probe.type == "Warning" and probe.source.host == "sandbox-node"
    status = apps.read_namespaced_deployment("unready", ns).status
    assert status.available_replicas is None and status.unavailable_replicas == 1


def test_missing_secret_and_key_until_created(core, apps, ns):
    env = [{"name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_ACCESS_KEY_ID"}}},
           {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}}}]
    apps.create_namespaced_deployment(ns, deployment("needy", env=env))

    def waiting_message():
        pod = pod_of(core, ns, "needy")
        state = pod and pod.status.container_statuses and pod.status.container_statuses[0].state.waiting
        return state and state.reason == "CreateContainerConfigError" and state.message

    assert wait_for(waiting_message) == 'secret "aws-keys" not found'
    pod = pod_of(core, ns, "needy")
    assert pod.status.phase == "Pending"
    failed = wait_for(lambda: (e := events(core, ns, pod.metadata.name).get("Failed")) and e.count >= 2 and e)
    assert (failed.type, failed.message, failed.involved_object.field_path) == (
        "Warning", 'Error: secret "aws-keys" not found', "spec.containers{app}")
    core.create_namespaced_secret(ns, {"metadata": {"name": "aws-keys"}, "stringData": {"OTHER": "x"}})
    assert wait_for(lambda: waiting_message() != 'secret "aws-keys" not found' and waiting_message()) == (
        f"couldn't find key AWS_ACCESS_KEY_ID in Secret {ns}/aws-keys")
    core.patch_namespaced_secret("aws-keys", ns, {"stringData": {"AWS_ACCESS_KEY_ID": "AKIA"}})
    wait_for(lambda: condition(core.read_namespaced_pod(pod.metadata.name, ns), "Ready").status == "True")
    assert "Started" in events(core, ns, pod.metadata.name)


def test_a_secret_volume_waits_in_container_creating_until_its_secret_and_key_exist(core, apps, ns):
    """ingest-broker mounts Secret api-keys (one item); without it the kubelet cannot set the volume up."""
    dep = deployment("mounts")
    dep["spec"]["template"]["spec"]["volumes"] = [{"name": "secret-volume", "secret": {
        "secretName": "api-keys", "items": [{"key": "ingest-service-account-auth-info", "path": "svc.json"}]}},
        {"name": "maybe", "secret": {"secretName": "nope", "optional": True}}]
    apps.create_namespaced_deployment(ns, dep)

    def mount_messages() -> set[str]:
        pod = pod_of(core, ns, "mounts")
        listed = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod.metadata.name}").items if pod else []
        return {e.message for e in listed if e.reason == "FailedMount"}

    missing = 'MountVolume.SetUp failed for volume "secret-volume" : secret "api-keys" not found'
    wait_for(lambda: missing in mount_messages())
    pod = pod_of(core, ns, "mounts")
    assert pod.status.phase == "Pending" and pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert len(mount_messages()) == 1  # the optional one is fine
    core.create_namespaced_secret(ns, {"metadata": {"name": "api-keys"}, "stringData": {"other": "x"}})
    wait_for(lambda: 'MountVolume.SetUp failed for volume "secret-volume" : references non-existent secret key: '
                     "ingest-service-account-auth-info" in mount_messages())
    assert pod_of(core, ns, "mounts").status.phase == "Pending"
    core.patch_namespaced_secret("api-keys", ns, {"stringData": {"ingest-service-account-auth-info": "{}"}})
    wait_for(lambda: condition(core.read_namespaced_pod(pod.metadata.name, ns), "Ready").status == "True")


# -------------------------------------------------------------------------------------------------- helm


CHART = """apiVersion: v2
name: states
version: 0.1.0
"""
TEMPLATE = """{{- if .Values.claim }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: {{ .Values.claim }}}
spec:
  accessModes: [ReadWriteOnce]
  {{- with .Values.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources: {requests: {storage: 1Gi}}
---
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image }}
          {{- with .Values.container }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          {{- if .Values.claim }}
          volumeMounts: [{name: data, mountPath: /data}]
          {{- end }}
      {{- if .Values.claim }}
      volumes: [{name: data, persistentVolumeClaim: {claimName: {{ .Values.claim }}}}]
      {{- end }}
"""
SECRET_ENV = [{"name": "AWS_ACCESS_KEY_ID",
               "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_ACCESS_KEY_ID"}}}]
SCENARIOS = {  # name -> (values, the Event reason that explains the timeout; None: helm --wait succeeds)
    "bound-on-first-consumer": ({"claim": "data"}, None),
    "missing-storage-class": ({"claim": "data", "storageClass": "io2-missing"}, "ProvisioningFailed"),
    "insufficient-memory": ({"container": {"resources": {"requests": {"memory": "64Gi"}}}}, "FailedScheduling"),
    "readiness-probe": ({"image": "example.org/helm-unready:1", "container": {
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}}, "Unhealthy"),
    "missing-secret": ({"container": {"env": SECRET_ENV}}, "Failed"),
    "attach-failure": ({"claim": "helm-stuck", "storageClass": "retained-gp2"}, "FailedAttachVolume"),
}


def helm_binary(major: int) -> Path:
    env = os.environ.get(f"MANUAL_DEPLOY_HELM{major}")
    candidate = Path(env) if env else REPO / ".tools" / f"helm{major}"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        pytest.skip(f"helm {major} not found (looked at {candidate})")
    return candidate


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("major", [3, 4])
def test_helm_wait_sees_the_state(major, scenario, kube, kubeconfig_and_client, core, tmp_path):
    binary = helm_binary(major)
    kube.add_failure("example.org/helm-unready:*", "ReadinessProbeFailed")
    kube.add_volume_failure("helm-stuck", "FailedAttachVolume")
    ns = new_namespace(core)
    values, reason = SCENARIOS[scenario]
    succeeds = reason is None
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART)
    (chart / "templates" / "all.yaml").write_text(TEMPLATE)
    (chart / "values.yaml").write_text(yaml.safe_dump({"image": "example.org/app:1", **values}))
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config"),
           "HELM_DATA_HOME": str(tmp_path / "data")}
    target = ["--kubeconfig", str(kubeconfig_and_client[0]), "--kube-context", CONTEXT, "--namespace", ns]
    argv = [str(binary), "upgrade", "--install", "rel", str(chart), "--wait", "--timeout", "30s" if succeeds else "6s",
            *target]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)
    took = time.monotonic() - started
    status = subprocess.run([str(binary), "status", "rel", "-o", "json", *target], capture_output=True, text=True,
                            timeout=30, env=env)
    release = json.loads(status.stdout)
    if succeeds:
        assert proc.returncode == 0, proc.stderr
        assert release["info"]["status"] == "deployed"
        assert core.read_namespaced_persistent_volume_claim("data", ns).status.phase == "Bound"
    else:
        assert proc.returncode != 0 and took >= 5.5, (took, proc.stdout, proc.stderr)
        assert release["info"]["status"] == "failed"
        pod = pod_of(core, ns, "rel")
        assert pod is not None and not (condition(pod, "Ready") and condition(pod, "Ready").status == "True")
        assert reason in {e.reason for e in core.list_namespaced_event(ns).items if e.type == "Warning"}
