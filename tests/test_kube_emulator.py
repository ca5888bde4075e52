"""The kube emulator against the clients the product really uses: the kubernetes package and helm 3/4.

One emulator serves the whole module (HTTPS, with a bearer token); each test works in its own
namespace. Helm tests need the binaries: $MANUAL_DEPLOY_HELM3 / $MANUAL_DEPLOY_HELM4, else
.tools/helm3 / .tools/helm4 (`python -m manual_deploy_sandbox.helmbin .tools`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from manual_deploy_sandbox.kube import KubeEmulator, ingest_contexts, write_kubeconfig

REPO = Path(__file__).resolve().parents[1]
TOKEN = "sandbox-token-7f3a"
CONTEXT = "ingest-eks-prod"
_names = itertools.count(1)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def kube():
    emulator = KubeEmulator(token=TOKEN, pod_start_delay=0.2, progress_deadline=1.0).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def kubeconfig(kube, tmp_path_factory) -> Path:
    return write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", ingest_contexts(kube.url), token=TOKEN)


@pytest.fixture(scope="module")
def api_client(kubeconfig):
    api = config.new_client_from_config(config_file=str(kubeconfig), context=CONTEXT)
    yield api
    api.close()


@pytest.fixture(scope="module")
def http(kube, tmp_path_factory):
    """A requests session that trusts the emulator's CA and sends the token."""
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_bytes(kube.ca_pem)
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides `verify`
    session.verify = str(ca)
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    yield session
    session.close()


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def ns(core) -> str:
    """A fresh namespace per test, created through the client like the product would."""
    name = f"t{next(_names)}-{os.getpid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def deployment(name: str, image: str, replicas: int = 1, labels: dict | None = None) -> dict:
    labels = {"app": name, **(labels or {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def wait_for(predicate, timeout: float = 8.0, interval: float = 0.1):
    """Poll until `predicate()` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def pods_of(core, ns: str, app: str) -> list:
    return core.list_namespaced_pod(ns, label_selector=f"app={app}").items


# ------------------------------------------------------------------------------ the kubernetes client


def test_version_deserializes(api_client):
    info = client.VersionApi(api_client).get_code()
    assert (info.major, info.minor, info.git_version) == ("1", "31", "v1.31.0")
    assert info.platform == "linux/amd64" and info.go_version


def test_discovery_answers_with_and_without_trailing_slash(http, kube):
    for path in ("/version", "/version/", "/api", "/api/", "/apis", "/apis/"):
        assert http.get(kube.url + path).status_code == 200, path
    core_list = http.get(kube.url + "/api/v1").json()
    assert core_list["groupVersion"] == "v1"
    pods = next(r for r in core_list["resources"] if r["name"] == "pods")
    assert pods["kind"] == "Pod" and pods["namespaced"] and "watch" in pods["verbs"] and pods["shortNames"] == ["po"]
    assert any(r["name"] == "pods/log" for r in core_list["resources"])
    apps_list = http.get(kube.url + "/apis/apps/v1").json()
    scale = next(r for r in apps_list["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["kind"]) == ("autoscaling", "Scale")
    openapi = http.get(kube.url + "/openapi/v2")
    assert openapi.status_code == 200 and openapi.content == b""


def test_namespace_create_read_list_delete(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="scratch-ns")))
    got = core.read_namespace("scratch-ns")
    assert got.status.phase == "Active" and got.metadata.uid
    assert "scratch-ns" in [n.metadata.name for n in core.list_namespace().items]
    core.create_namespaced_config_map("scratch-ns", {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    core.delete_namespace("scratch-ns")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cm", "scratch-ns")
    assert missing.value.status == 404


def test_label_and_field_selectors_filter_lists(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("web", "example.org/web:1", labels={"tier": "front"}))
    apps.create_namespaced_deployment(ns, deployment("worker", "example.org/worker:1", labels={"tier": "back"}))
    names = lambda **kw: sorted(d.metadata.name for d in apps.list_namespaced_deployment(ns, **kw).items)  # noqa: E731
    assert names() == ["web", "worker"]
    assert names(label_selector="tier=front") == ["web"]
    assert names(label_selector="tier!=front") == ["worker"]
    assert names(label_selector="tier in (back, side)") == ["worker"]
    assert names(label_selector="tier notin (back),app") == ["web"]
    assert names(label_selector="!tier") == []
    assert names(field_selector="metadata.name=worker") == ["worker"]
    listed = apps.list_namespaced_deployment(ns)
    assert listed.kind == "DeploymentList" and int(listed.metadata.resource_version) > 0


def test_server_fills_identity_and_generation(apps, ns):
    created = apps.create_namespaced_deployment(ns, deployment("ident", "example.org/ident:1"))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.generation == 1 and int(meta.resource_version) > 0
    patched = apps.patch_namespaced_deployment("ident", ns, {"spec": {"replicas": 3}})
    assert patched.metadata.generation == 2
    assert int(patched.metadata.resource_version) > int(meta.resource_version)


def test_deployment_pods_become_ready(apps, core, ns):
    apps.create_namespaced_deployment(ns, deployment("ready", "example.org/ready:1", replicas=2))
    selector = apps.read_namespaced_deployment("ready", ns).spec.selector.match_labels
    label_selector = ",".join(f"{k}={v}" for k, v in selector.items())

    def all_ready():
        pods = core.list_namespaced_pod(ns, label_selector=label_selector).items
        return len(pods) == 2 and all(
            c.status == "True" for p in pods for c in p.status.conditions if c.type == "Ready") and pods

    pods = wait_for(all_ready)
    assert {p.status.phase for p in pods} == {"Running"}
    assert all(p.spec.node_name == "sandbox-node" and p.metadata.labels["pod-template-hash"] for p in pods)
    status = wait_for(lambda: (s := apps.read_namespaced_deployment_status("ready", ns).status)
                      .available_replicas == 2 and s)
    assert status.observed_generation == 1 and status.updated_replicas == 2
    assert {(c.type, c.status, c.reason) for c in status.conditions} == {
        ("Available", "True", "MinimumReplicasAvailable"), ("Progressing", "True", "NewReplicaSetAvailable")}
    rs = apps.list_namespaced_replica_set(ns).items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].kind == "Deployment" and rs[0].status.ready_replicas == 2


def test_replace_with_stale_resource_version_conflicts(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("lock", "example.org/lock:1"))
    stale = apps.read_namespaced_deployment("lock", ns)
    apps.patch_namespaced_deployment("lock", ns, {"metadata": {"annotations": {"holder": "someone-else"}}})
    stale.metadata.annotations = {"holder": "me"}
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment("lock", ns, stale)
    assert conflict.value.status == 409
    body = status_of(conflict.value)
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Conflict", 409)
    fresh = apps.read_namespaced_deployment("lock", ns)
    fresh.metadata.annotations["holder"] = "me"
    assert apps.replace_namespaced_deployment("lock", ns, fresh).metadata.annotations["holder"] == "me"
    with pytest.raises(ApiException) as stale_patch:
        apps.patch_namespaced_deployment("lock", ns, {"metadata": {"resourceVersion": stale.metadata.resource_version}})
    assert stale_patch.value.status == 409


def test_lease_rules(api_client, ns):
    leases = client.CoordinationV1Api(api_client)
    lease = {"metadata": {"name": "deploy-lock"}, "spec": {"holderIdentity": "alice", "leaseDurationSeconds": 60}}
    leases.create_namespaced_lease(ns, lease)
    with pytest.raises(ApiException) as twice:
        leases.create_namespaced_lease(ns, lease)
    assert twice.value.status == 409 and status_of(twice.value)["reason"] == "AlreadyExists"

    # The client serialises a datetime with microsecond == 0 as "...T10:00:00+00:00"; the apiserver
    # wants MicroTime ("...T10:00:00.000000Z") and refuses it. Products must send strings.
    whole_second = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="naive-lock"),
                          spec=client.V1LeaseSpec(holder_identity="bob", acquire_time=whole_second))
    with pytest.raises(ApiException) as invalid:
        leases.create_namespaced_lease(ns, body)
    assert invalid.value.status == 422 and status_of(invalid.value)["reason"] == "Invalid"
    assert "spec.acquireTime" in status_of(invalid.value)["message"]

    patched = leases.patch_namespaced_lease("deploy-lock", ns, {"spec": {
        "acquireTime": "2026-11-26T10:00:00.000000Z", "renewTime": "2026-11-26T10:00:05.000000+00:00"}})
    assert patched.spec.acquire_time == whole_second
    current = leases.read_namespaced_lease("deploy-lock", ns)
    leases.patch_namespaced_lease("deploy-lock", ns, {"spec": {"holderIdentity": "carol"}})
    current.spec.holder_identity = "mallory"
    with pytest.raises(ApiException) as stale:
        leases.replace_namespaced_lease("deploy-lock", ns, current)
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict"

    assert [lease.metadata.name for lease in leases.list_namespaced_lease(ns).items] == ["deploy-lock"]
    only_if = lambda rv: client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=rv))  # noqa: E731
    with pytest.raises(ApiException) as stale_delete:
        leases.delete_namespaced_lease("deploy-lock", ns, body=only_if(current.metadata.resource_version))
    assert stale_delete.value.status == 409
    fresh = leases.read_namespaced_lease("deploy-lock", ns)
    deleted = leases.delete_namespaced_lease("deploy-lock", ns, body=only_if(fresh.metadata.resource_version))
    assert deleted["status"] == "Success"  # client 37 types delete answers as plain `object`
    assert leases.list_namespaced_lease(ns).items == []


def test_crash_loop_back_off(kube, apps, core, ns):
    kube.add_failure("example.org/crashy:*", "CrashLoopBackOff", log="starting\npanic: no config\n")
    apps.create_namespaced_deployment(ns, deployment("crashy", "example.org/crashy:2"))
    pod = wait_for(lambda: (pods := pods_of(core, ns, "crashy")) and pods[0].status.container_statuses and
                   pods[0].status.container_statuses[0].restart_count >= 1 and pods[0])
    first = pod.status.container_statuses[0]
    assert pod.status.phase == "Running" and not first.ready
    assert first.state.waiting.reason == "CrashLoopBackOff"
    assert first.last_state.terminated.exit_code == 1
    wait_for(lambda: core.read_namespaced_pod(pod.metadata.name, ns).status.container_statuses[0].restart_count
             > first.restart_count, timeout=4)
    name = pod.metadata.name
    assert core.read_namespaced_pod_log(name, ns) == "starting\npanic: no config\n"
    assert core.read_namespaced_pod_log(name, ns, container="app", tail_lines=1, previous=True) == "panic: no config\n"
    events = wait_for(lambda: [e for e in core.list_namespaced_event(
        ns, field_selector=f"involvedObject.name={name}").items if e.reason == "BackOff"])
    assert events[0].type == "Warning" and "Back-off restarting failed container app" in events[0].message
    assert events[0].involved_object.uid == pod.metadata.uid
    assert all(e.involved_object.name == name for e in core.list_namespaced_event(
        ns, field_selector=f"involvedObject.name={name}").items)


def test_image_pull_back_off(kube, apps, core, ns):
    kube.add_failure("example.org/ghost:*", "ImagePullBackOff")
    apps.create_namespaced_deployment(ns, deployment("ghost", "example.org/ghost:404"))

    def waiting():
        pods = pods_of(core, ns, "ghost")
        statuses = pods[0].status.container_statuses if pods else None
        waiting = statuses and statuses[0].state.waiting
        return waiting and waiting.reason == "ImagePullBackOff" and pods[0]

    pod = wait_for(waiting)
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.message == 'Back-off pulling image "example.org/ghost:404"'
    selector = f"involvedObject.name={pod.metadata.name},involvedObject.kind=Pod"
    events = wait_for(lambda: {e.reason for e in core.list_namespaced_event(ns, field_selector=selector).items}
                      >= {"Scheduled", "Pulling", "Failed", "BackOff"} and core.list_namespaced_event(ns).items)
    failed = [e.message for e in events if e.reason == "Failed" and e.message.startswith("Failed to pull image")]
    assert failed and failed[0].endswith("not found")
    with pytest.raises(ApiException) as no_log:
        core.read_namespaced_pod_log(pod.metadata.name, ns)
    assert no_log.value.status == 400


def test_progress_deadline_exceeded(kube, apps, core, ns):
    kube.add_failure("example.org/huge:*", "ProgressDeadlineExceeded")
    apps.create_namespaced_deployment(ns, deployment("huge", "example.org/huge:1"))

    def timed_out():
        conditions = apps.read_namespaced_deployment_status("huge", ns).status.conditions or []
        return next((c for c in conditions if c.type == "Progressing" and c.status == "False"), None)

    condition = wait_for(timed_out, timeout=6)
    assert condition.reason == "ProgressDeadlineExceeded"
    rs_name = apps.list_namespaced_replica_set(ns).items[0].metadata.name
    assert condition.message == f'ReplicaSet "{rs_name}" has timed out progressing.'
    pod = pods_of(core, ns, "huge")[0]
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert (pod.status.phase, scheduled.status, scheduled.reason) == ("Pending", "False", "Unschedulable")
    reasons = {e.reason for e in core.list_namespaced_event(ns).items}
    assert {"FailedScheduling", "ProgressDeadlineExceeded"} <= reasons


def test_cascade_delete_removes_replicasets_and_pods(apps, core, ns):
    apps.create_namespaced_deployment(ns, deployment("doomed", "example.org/doomed:1", replicas=2))
    wait_for(lambda: len(pods_of(core, ns, "doomed")) == 2)
    apps.delete_namespaced_deployment("doomed", ns, propagation_policy="Foreground")
    assert apps.list_namespaced_replica_set(ns).items == []
    assert pods_of(core, ns, "doomed") == []
    with pytest.raises(ApiException) as gone:
        apps.delete_namespaced_deployment("doomed", ns)
    assert gone.value.status == 404 and status_of(gone.value)["reason"] == "NotFound"


def test_service_gets_cluster_ip_and_node_port(core, ns):
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
        "type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.cluster_ips == [svc.spec.cluster_ip]
    port = svc.spec.ports[0]
    assert 30000 <= port.node_port <= 32767 and port.protocol == "TCP"
    again = core.patch_namespaced_service("web", ns, {"metadata": {"labels": {"x": "y"}}})
    assert again.spec.cluster_ip == svc.spec.cluster_ip and again.spec.ports[0].node_port == port.node_port


def test_watch_streams_json_events_from_a_resource_version(kube, http, core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg", "labels": {"w": "1"}}, "data": {"k": "1"}})
    core.patch_namespaced_config_map("cfg", ns, {"data": {"k": "2"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "other"}})
    url = f"{kube.url}/api/v1/namespaces/{ns}/configmaps"
    params = {"watch": "true", "resourceVersion": start, "labelSelector": "w=1", "timeoutSeconds": "1"}
    began = time.monotonic()
    with http.get(url, params=params, stream=True, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert time.monotonic() - began < 5
    assert [(e["type"], e["object"]["data"]["k"]) for e in events] == [("ADDED", "1"), ("MODIFIED", "2")]

    seen: list[tuple[str, str]] = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_config_map, ns, field_selector="metadata.name=cfg",
                                timeout_seconds=3):
        seen.append((event["type"], event["object"].data["k"]))
        if len(seen) == 1:  # the stream is live: change the object under it
            core.patch_namespaced_config_map("cfg", ns, {"data": {"k": "3"}})
        if len(seen) == 2:
            watcher.stop()
    assert seen == [("ADDED", "2"), ("MODIFIED", "3")]


def test_patch_flavours_apply_and_dry_run(kube, http, apps, ns):
    base = f"{kube.url}/apis/apps/v1/namespaces/{ns}/deployments"
    manifest = deployment("patchy", "example.org/patchy:1")
    manifest["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "example.org/side:1"})
    applied = http.patch(f"{base}/patchy", params={"fieldManager": "test"}, data=yaml.safe_dump(manifest),
                         headers={"Content-Type": "application/apply-patch+yaml"})
    assert applied.status_code == 201, applied.text

    def patch(body, content_type, **params):
        answer = http.patch(f"{base}/patchy", params=params, data=json.dumps(body),
                            headers={"Content-Type": content_type})
        assert answer.status_code == 200, answer.text
        return answer.json()

    new_image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.org/patchy:2"}]}}}}
    strategic = patch(new_image, "application/strategic-merge-patch+json")
    assert [c["image"] for c in strategic["spec"]["template"]["spec"]["containers"]] == [
        "example.org/patchy:2", "example.org/side:1"]
    merged = patch({"metadata": {"labels": {"merged": "yes"}}}, "application/merge-patch+json")
    assert merged["metadata"]["labels"]["merged"] == "yes"
    jsonpatched = patch([{"op": "replace", "path": "/spec/replicas", "value": 4}], "application/json-patch+json")
    assert jsonpatched["spec"]["replicas"] == 4
    dry = patch({"spec": {"replicas": 9}}, "application/merge-patch+json", dryRun="All")
    assert dry["spec"]["replicas"] == 9
    assert apps.read_namespaced_deployment("patchy", ns).spec.replicas == 4
    manifest["spec"]["template"]["spec"]["containers"].pop()  # the same manager stops applying the sidecar
    reapplied = http.patch(f"{base}/patchy", params={"fieldManager": "test"}, data=yaml.safe_dump(manifest),
                           headers={"Content-Type": "application/apply-patch+yaml"}).json()
    assert [c["name"] for c in reapplied["spec"]["template"]["spec"]["containers"]] == ["app"]
    assert reapplied["metadata"]["labels"]["merged"] == "yes"  # set by someone else: kept
    scale = apps.patch_namespaced_deployment_scale("patchy", ns, {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1 and "app=patchy" in scale.status.selector
    assert kube.get("apps/v1/deployments", ns, "patchy")["spec"]["replicas"] == 1


def test_protobuf_secret_is_decoded_and_unknown_protobuf_refused(kube, http, core, ns):
    secret = _pb(1, _pb(1, b"pb-secret") + _pb(3, ns.encode()) + _pb(11, _pb(1, b"owner") + _pb(2, b"helm")))
    secret += _pb(2, _pb(1, b"release") + _pb(2, b"\x00\x01binary")) + _pb(3, b"helm.sh/release.v1")
    body = b"k8s\x00" + _pb(1, _pb(1, b"v1") + _pb(2, b"Secret")) + _pb(2, secret)
    url = f"{kube.url}/api/v1/namespaces/{ns}/secrets"
    created = http.post(url, data=body, headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert created.status_code == 201, created.text
    got = core.read_namespaced_secret("pb-secret", ns)
    assert got.type == "helm.sh/release.v1" and got.metadata.labels == {"owner": "helm"}
    assert got.data == {"release": "AAFiaW5hcnk="}
    odd = b"k8s\x00" + _pb(1, _pb(1, b"apps/v1") + _pb(2, b"Deployment")) + _pb(2, b"")
    refused = http.post(f"{kube.url}/apis/apps/v1/namespaces/{ns}/deployments", data=odd,
                        headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert refused.status_code == 415 and refused.json()["kind"] == "Status"
    assert http.post(url, data=b"k8s\x00\xff", headers={"Content-Type": "application/vnd.kubernetes.protobuf"}
                     ).status_code == 415


def test_auth_and_request_journal(kube, http):
    with requests.Session() as bare:
        bare.trust_env = False
        anonymous = bare.get(kube.url + "/api/v1/namespaces", verify=http.verify, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"
    journal = http.get(kube.url + "/_emulator/requests").json()["requests"]
    assert journal and {"method", "path", "query", "content_type"} <= set(journal[0])
    assert TOKEN not in json.dumps(journal) and TOKEN not in json.dumps(kube.requests)


def test_failure_injection_over_http(kube, http, apps, core, ns):
    added = http.post(kube.url + "/_emulator/failures", json={"image": "example.org/remote:*",
                                                              "mode": "CrashLoopBackOff", "log": "remote boom\n"})
    assert added.status_code == 201
    assert http.post(kube.url + "/_emulator/failures", json={"image": "x", "mode": "Nope"}).status_code == 400
    apps.create_namespaced_deployment(ns, deployment("remote", "example.org/remote:1"))
    pod = wait_for(lambda: (pods := pods_of(core, ns, "remote")) and pods[0].status.container_statuses and pods[0])
    assert core.read_namespaced_pod_log(pod.metadata.name, ns) == "remote boom\n"
    assert http.delete(kube.url + "/_emulator/failures").json() == {"failures": []}
    assert kube.failures == []


def test_standalone_process_serves_until_sigterm(tmp_path):
    kubeconfig, ready = tmp_path / "kubeconfig", tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "manual_deploy_sandbox.kube", "--kubeconfig", str(kubeconfig),
                             "--token", "proc-token", "--ready-file", str(ready)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        info = wait_for(lambda: ready.exists() and json.loads(ready.read_text()), timeout=20)
        assert info["pid"] == proc.pid and info["url"].startswith("https://127.0.0.1:")
        (tmp_path / "ca.pem").write_text(info["ca_pem"])
        with requests.Session() as session:  # a separate process drives the failures over HTTP
            session.trust_env, session.verify = False, str(tmp_path / "ca.pem")
            added = session.post(info["url"] + "/_emulator/failures", json={"image": "*", "mode": "CrashLoopBackOff"})
            assert added.status_code == 201
        contexts = yaml.safe_load(kubeconfig.read_text())["contexts"]
        assert {c["name"]: c["context"]["namespace"] for c in contexts} == {
            "ingest-eks-dev": "dev-environment", "ingest-eks-staging": "staging-environment",
            "ingest-eks-prod": "prod-environment"}
        api = config.new_client_from_config(config_file=str(kubeconfig), context="ingest-eks-staging")
        try:
            assert client.CoreV1Api(api).read_namespace("staging-environment").status.phase == "Active"
        finally:
            api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    assert code == 0 and not ready.exists()


def _pb(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (all the test encoder needs)."""
    def varint(n: int) -> bytes:
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# ---------------------------------------------------------------------------------------------- helm


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: tiny\nversion: 0.1.0\nappVersion: '1.0'\n",
    "values.yaml": "image: example.org/tiny:1\nreplicas: 2\n",
    "templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image }}
          ports: [{containerPort: 8080}]
""",
    "templates/service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  type: NodePort
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80, targetPort: 8080}]
""",
}


def helm_binary(major: int) -> Path:
    env = os.environ.get(f"MANUAL_DEPLOY_HELM{major}")
    candidate = Path(env) if env else REPO / ".tools" / f"helm{major}"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        pytest.skip(f"helm {major} not found: set MANUAL_DEPLOY_HELM{major} or run "
                    f"`python -m manual_deploy_sandbox.helmbin .tools` (looked at {candidate})")
    return candidate


@pytest.fixture
def chart(tmp_path) -> Path:
    for name, text in CHART.items():
        (tmp_path / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / name).write_text(text)
    return tmp_path / "chart"


@pytest.mark.parametrize("major", [3, 4])
def test_helm_lifecycle(major, kube, kubeconfig, chart, apps, ns, tmp_path):
    binary = helm_binary(major)
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config"),
           "HELM_DATA_HOME": str(tmp_path / "data")}
    release = f"tiny{major}"

    def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(binary), *args, "--kubeconfig", str(kubeconfig), "--kube-context", CONTEXT, "--namespace", ns]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {major} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def image() -> str:
        return apps.read_namespaced_deployment(release, ns).spec.template.spec.containers[0].image

    def history() -> list[dict]:
        return json.loads(helm("history", release, "-o", "json").stdout)

    helm("upgrade", "--install", release, str(chart), "--wait", "--timeout", "60s")
    assert json.loads(helm("status", release, "-o", "json").stdout)["info"]["status"] == "deployed"
    assert image() == "example.org/tiny:1"

    helm("upgrade", "--install", release, str(chart), "--set", "image=example.org/tiny:2", "--wait", "--timeout", "60s")
    assert image() == "example.org/tiny:2"
    assert [h["status"] for h in history()] == ["superseded", "deployed"]

    helm("rollback", release, "1", "--wait", "--timeout", "60s")
    assert image() == "example.org/tiny:1"

    kube.add_failure(f"example.org/broken{major}:*", "ImagePullBackOff")
    undo = "--atomic" if major == 3 else "--rollback-on-failure"
    failed = helm("upgrade", "--install", release, str(chart), "--set", f"image=example.org/broken{major}:1",
                  "--wait", undo, "--timeout", "5s", check=False)
    assert failed.returncode != 0, failed.stdout
    statuses = [(h["status"], h["description"]) for h in history()]
    assert statuses[-2][0] == "failed" and statuses[-1][0] == "deployed" and "Rollback" in statuses[-1][1]
    assert image() == "example.org/tiny:1"
    assert wait_for(lambda: (s := apps.read_namespaced_deployment_status(release, ns).status).ready_replicas == 2 and s)

    helm("uninstall", release, "--wait", "--timeout", "60s")
    assert apps.list_namespaced_deployment(ns).items == []
    assert kube.list("apps/v1/replicasets", ns) == [] and kube.list("v1/pods", ns) == []
    assert kube.list("v1/secrets", ns) == []
