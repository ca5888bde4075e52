"""The kube emulator's CronJobs and Ingresses, as the product's readiness rules meet them on EKS.

A CronJob starts a Job only when its schedule fires; `run_cronjob` fires it now, and the Job is the
real controller's (name, labels, owner, status.active / lastSuccessfulTime) and ends like any Job in
the emulator. An Ingress gets its load balancer's hostname from the (emulated) AWS load balancer
controller, or that controller's Warning Events when it cannot build one. Everything is checked
through the kubernetes client and, for a chart holding both kinds, through the real helm.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from manual_deploy_sandbox.kube import KubeEmulator, ingest_contexts, write_kubeconfig
from manual_deploy_sandbox.kube.errors import ApiError

REPO = Path(__file__).resolve().parents[1]
CONTEXT = "ingest-eks-prod"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def kube():
    emulator = KubeEmulator(tls=False, pod_start_delay=0.2, progress_deadline=1.0).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def kubeconfig_and_client(kube, tmp_path_factory):
    kubeconfig = write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", ingest_contexts(kube.url))
    api = config.new_client_from_config(config_file=str(kubeconfig), context=CONTEXT)
    yield kubeconfig, api
    api.close()


@pytest.fixture
def core(kubeconfig_and_client):
    return client.CoreV1Api(kubeconfig_and_client[1])


@pytest.fixture
def batch(kubeconfig_and_client):
    return client.BatchV1Api(kubeconfig_and_client[1])


@pytest.fixture
def networking(kubeconfig_and_client):
    return client.NetworkingV1Api(kubeconfig_and_client[1])


@pytest.fixture
def ns(core) -> str:
    name = f"k{next(_names)}-{os.getpid()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


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


def cronjob(name: str, image: str, **spec) -> dict:
    """The shape of the team's update-project-catalogue CronJob."""
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "0 3 * * *", **spec, "jobTemplate": {
                "metadata": {"labels": {"app": name}, "annotations": {"team": "ingest"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "job", "image": image}]}}}}}}


def events_about(core, ns: str, kind: str, name: str) -> list:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    return core.list_namespaced_event(ns, field_selector=selector).items


# ----------------------------------------------------------------------------------------- CronJob


def test_a_run_starts_a_job_owned_by_the_cronjob_that_completes(kube, batch, core, ns):
    created = batch.create_namespaced_cron_job(ns, cronjob("catalogue", "quay.io/ebi-ait/catalogue:1"))
    assert created.spec.suspend is False and created.spec.failed_jobs_history_limit == 1  # apiserver defaults

    name = kube.run_cronjob(ns, "catalogue")
    assert name is not None and name.startswith("catalogue-") and name.removeprefix("catalogue-").isdigit()
    job = batch.read_namespaced_job(name, ns)
    assert job.metadata.labels == {"app": "catalogue"} and job.metadata.annotations["team"] == "ingest"
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in job.metadata.annotations
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": job.metadata.uid}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == name and job.spec.backoff_limit == 2
    [owner] = job.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name, owner.uid, owner.controller) == (
        "batch/v1", "CronJob", "catalogue", created.metadata.uid, True)
    started = batch.read_namespaced_cron_job_status("catalogue", ns).status
    assert started.last_schedule_time is not None
    assert [ref.name for ref in started.active or []] in ([name], [])  # [] only if it already finished

    done = wait_for(lambda: (j := batch.read_namespaced_job_status(name, ns)).status.completion_time and j)
    assert [c.type for c in done.status.conditions if c.status == "True"] == ["SuccessCriteriaMet", "Complete"]
    status = wait_for(lambda: (s := batch.read_namespaced_cron_job_status("catalogue", ns).status)
                      .last_successful_time and s)
    assert status.active is None and status.last_successful_time == done.status.completion_time
    reasons = {e.reason for e in events_about(core, ns, "CronJob", "catalogue")}
    assert {"SuccessfulCreate", "SawCompletedJob"} <= reasons


def test_a_job_whose_image_fails_exceeds_its_backoff_limit_with_an_event(kube, batch, core, ns):
    kube.add_failure("quay.io/ebi-ait/catalogue:broken*", "CrashLoopBackOff")
    try:
        batch.create_namespaced_cron_job(ns, cronjob("broken", "quay.io/ebi-ait/catalogue:broken-1"))
        name = kube.run_cronjob(ns, "broken")
        failed = wait_for(lambda: (j := batch.read_namespaced_job_status(name, ns)).status.conditions and j)
    finally:
        kube.clear_failures()
    assert failed.status.failed == 3 and failed.status.completion_time is None
    assert [(c.type, c.reason) for c in failed.status.conditions] == [
        ("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    [event] = wait_for(lambda: events_about(core, ns, "Job", name))
    assert (event.type, event.reason, event.source.component) == ("Warning", "BackoffLimitExceeded", "job-controller")
    status = wait_for(lambda: (s := batch.read_namespaced_cron_job_status("broken", ns).status).active is None and s)
    assert status.last_successful_time is None and status.last_schedule_time is not None


def test_runs_get_their_own_names_and_the_failed_history_is_pruned(kube, batch, ns):
    kube.add_failure("quay.io/ebi-ait/catalogue:again*", "ImagePullBackOff")
    try:
        batch.create_namespaced_cron_job(ns, cronjob("again", "quay.io/ebi-ait/catalogue:again-1"))
        first = kube.run_cronjob(ns, "again")
        wait_for(lambda: batch.read_namespaced_job_status(first, ns).status.conditions)
        second = kube.run_cronjob(ns, "again")
        assert second != first
        wait_for(lambda: [j.metadata.name for j in batch.list_namespaced_job(ns).items] == [second])
    finally:
        kube.clear_failures()


def test_a_suspended_cronjob_starts_nothing(kube, batch, ns):
    batch.create_namespaced_cron_job(ns, cronjob("paused", "quay.io/ebi-ait/catalogue:1", suspend=True))
    assert kube.run_cronjob(ns, "paused") is None
    assert batch.list_namespaced_job(ns).items == []
    assert batch.read_namespaced_cron_job_status("paused", ns).status.last_schedule_time is None


def test_forbid_skips_a_run_while_the_last_one_runs(tmp_path):
    with KubeEmulator(tls=False, pod_start_delay=5.0) as slow:  # its Jobs take 5 s to finish
        api = config.new_client_from_config(config_file=str(write_kubeconfig(
            tmp_path / "config", ingest_contexts(slow.url))), context=CONTEXT)
        try:
            client.BatchV1Api(api).create_namespaced_cron_job("default", cronjob(
                "single", "quay.io/ebi-ait/catalogue:1", concurrencyPolicy="Forbid"))
            assert slow.run_cronjob("default", "single") is not None
            assert slow.run_cronjob("default", "single") is None
            assert len(client.BatchV1Api(api).list_namespaced_job("default").items) == 1
        finally:
            api.close()


def test_replace_deletes_the_running_job_for_the_new_one(tmp_path):
    with KubeEmulator(tls=False, pod_start_delay=5.0) as slow:
        api = config.new_client_from_config(config_file=str(write_kubeconfig(
            tmp_path / "config", ingest_contexts(slow.url))), context=CONTEXT)
        try:
            batch = client.BatchV1Api(api)
            batch.create_namespaced_cron_job("default", cronjob(
                "newest", "quay.io/ebi-ait/catalogue:1", concurrencyPolicy="Replace"))
            first = slow.run_cronjob("default", "newest")
            second = slow.run_cronjob("default", "newest")
            assert [j.metadata.name for j in batch.list_namespaced_job("default").items] == [second] != [first]
            status = batch.read_namespaced_cron_job_status("newest", "default").status
            assert [ref.name for ref in status.active] == [second]
            reasons = [e.reason for e in client.CoreV1Api(api).list_namespaced_event("default").items]
            assert "SuccessfulDelete" in reasons and "MissingJob" not in reasons
        finally:
            api.close()


def test_the_apiserver_refuses_what_batch_v1_refuses(batch, ns):
    always = cronjob("always", "quay.io/ebi-ait/catalogue:1")
    del always["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"]
    unscheduled = cronjob("unscheduled", "quay.io/ebi-ait/catalogue:1", schedule="nightly")
    for body, field in ((always, "spec.jobTemplate.spec.template.spec.restartPolicy"), (unscheduled, "spec.schedule")):
        with pytest.raises(ApiException) as refused:
            batch.create_namespaced_cron_job(ns, body)
        assert refused.value.status == 422 and field in json.loads(refused.value.body)["message"]


def test_a_job_is_labelled_for_its_pods_and_its_template_cannot_change(batch, ns):
    body = cronjob("plain", "quay.io/ebi-ait/catalogue:1")["spec"]["jobTemplate"]
    job = batch.create_namespaced_job(ns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "plain"},
                                           "spec": {k: v for k, v in body["spec"].items() if k != "backoffLimit"}})
    uid = job.metadata.uid
    assert job.metadata.labels == {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "plain",
                                   "controller-uid": uid, "job-name": "plain"}  # none given: the template's
    assert (job.spec.backoff_limit, job.spec.completions, job.spec.completion_mode) == (6, 1, "NonIndexed")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "job", "image": "quay.io/ebi-ait/catalogue:2"}]}}}}
    with pytest.raises(ApiException) as refused:
        batch.patch_namespaced_job("plain", ns, patch)
    assert refused.value.status == 422 and "spec.template" in json.loads(refused.value.body)["message"]


def test_deleting_the_cronjob_deletes_its_jobs(kube, batch, ns):
    batch.create_namespaced_cron_job(ns, cronjob("gone", "quay.io/ebi-ait/catalogue:1"))
    kube.run_cronjob(ns, "gone")
    batch.delete_namespaced_cron_job("gone", ns)
    assert batch.list_namespaced_job(ns).items == []


def test_rbac_refuses_cronjobs_without_a_grant(kube, batch, ns):
    batch.create_namespaced_cron_job(ns, cronjob("guarded", "quay.io/ebi-ait/catalogue:1"))
    kube.deny("list", "cronjobs", group="batch", namespace=ns)
    try:
        with pytest.raises(ApiException) as refused:
            batch.list_namespaced_cron_job(ns)
        assert batch.read_namespaced_cron_job("guarded", ns).metadata.name == "guarded"  # get is still granted
    finally:
        kube.clear_denials()
    assert refused.value.status == 403 and json.loads(refused.value.body)["message"] == (
        f'cronjobs.batch is forbidden: User "system:anonymous" cannot list resource "cronjobs" in API group '
        f'"batch" in the namespace "{ns}"')
    assert [c.metadata.name for c in batch.list_namespaced_cron_job(ns).items] == ["guarded"]


# ----------------------------------------------------------------------------------------- Ingress


def ingress(name: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "annotations": {"alb.ingress.kubernetes.io/scheme": "internet-facing"}},
            "spec": {"ingressClassName": "alb", "rules": [{"host": "ingest.example.org", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}}


def service(core, ns: str, name: str) -> None:
    """The NodePort Service an ALB Ingress (target type instance) sends its traffic to."""
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                                        "spec": {"type": "NodePort", "selector": {"app": name},
                                                 "ports": [{"port": 80, "targetPort": 8080}]}})


def ingress_with_service(networking, core, ns: str, name: str):
    service(core, ns, name)
    return networking.create_namespaced_ingress(ns, ingress(name))


def address_of(networking, ns: str, name: str) -> str | None:
    balancer = networking.read_namespaced_ingress_status(name, ns).status.load_balancer
    return balancer.ingress[0].hostname if balancer and balancer.ingress else None


def test_an_ingress_gets_its_load_balancer_hostname_soon(networking, core, ns):
    created = ingress_with_service(networking, core, ns, "ingest-ui")
    assert created.status.load_balancer.ingress is None
    began = time.monotonic()
    hostname = wait_for(lambda: address_of(networking, ns, "ingest-ui"), timeout=3.0, interval=0.05)
    assert time.monotonic() - began < 1.5
    assert hostname.startswith(f"k8s-{ns.replace('-', '')[:8]}-ingestui-")
    assert hostname.endswith(".eu-west-2.elb.amazonaws.com")
    [event] = events_about(core, ns, "Ingress", "ingest-ui")
    assert (event.type, event.reason, event.source.component) == ("Normal", "SuccessfullyReconciled", "ingress")

    networking.delete_namespaced_ingress("ingest-ui", ns)  # the controller's finalizer holds it for a moment
    assert networking.read_namespaced_ingress("ingest-ui", ns).metadata.finalizers == ["ingress.k8s.aws/resources"]
    wait_for(lambda: networking.list_namespaced_ingress(ns).items == [], timeout=3.0)


def test_an_ingress_the_controller_cannot_build_has_no_address_and_warnings(kube, networking, core, ns):
    kube.add_ingress_failure("broken-*", reason="FailedDeployModel",
                             message="Failed deploy model due to AccessDenied: not authorized")
    kube.add_ingress_failure("no-subnets")
    assert [f["name"] for f in kube.ingress_failures] == ["broken-*", "no-subnets"]
    try:
        for name in ("broken-ui", "no-subnets"):
            created = ingress_with_service(networking, core, ns, name)
        [event] = wait_for(lambda: events_about(core, ns, "Ingress", "broken-ui"))
        time.sleep(1.5)  # longer than an address takes, and than one retry
        assert address_of(networking, ns, "broken-ui") is None and address_of(networking, ns, "no-subnets") is None
        [again] = events_about(core, ns, "Ingress", "broken-ui")
        [default] = events_about(core, ns, "Ingress", "no-subnets")
    finally:
        kube.clear_failures()
    assert (event.type, event.reason, event.message, event.source.component) == (
        "Warning", "FailedDeployModel", "Failed deploy model due to AccessDenied: not authorized", "ingress")
    involved = event.involved_object
    assert (involved.kind, involved.name, involved.namespace, involved.api_version) == (
        "Ingress", "broken-ui", ns, "networking.k8s.io/v1")
    assert involved.uid == networking.read_namespaced_ingress("broken-ui", ns).metadata.uid
    assert again.count >= 2 and again.last_timestamp >= again.first_timestamp  # the controller keeps retrying
    assert default.reason == "FailedBuildModel" and "couldn't auto-discover subnets" in default.message
    assert created.metadata.name == "no-subnets"
    assert wait_for(lambda: address_of(networking, ns, "broken-ui"), timeout=3.0)  # fixed: the next retry succeeds


def test_an_ingress_whose_service_is_missing_gets_no_address_until_it_exists(networking, core, ns):
    """No injection needed: the controller cannot build targets for a Service that is not there."""
    networking.create_namespaced_ingress(ns, ingress("ingest-ui"))
    [event] = wait_for(lambda: events_about(core, ns, "Ingress", "ingest-ui"))
    assert (event.type, event.reason, event.message) == (
        "Warning", "FailedBuildModel",
        f'Failed build model due to ingress: {ns}/ingest-ui: services "ingest-ui" not found')
    assert address_of(networking, ns, "ingest-ui") is None
    service(core, ns, "ingest-ui")
    assert wait_for(lambda: address_of(networking, ns, "ingest-ui"), timeout=3.0)


def test_an_ingress_without_path_types_is_refused(kube, ns):
    """What helm sends from an extensions/v1beta1-era template (the client would refuse to send it)."""
    body = ingress("old-style")
    del body["spec"]["rules"][0]["http"]["paths"][0]["pathType"]
    with pytest.raises(ApiError) as refused:
        kube.create("networking.k8s.io/v1/ingresses", ns, body)
    assert refused.value.code == 422 and "spec.rules[0].http.paths[0].pathType" in refused.value.message


def test_rbac_refuses_ingresses_without_a_grant(kube, networking, ns):
    kube.deny("get", "ingresses", group="networking.k8s.io")
    try:
        with pytest.raises(ApiException) as refused:
            networking.read_namespaced_ingress("anything", ns)
    finally:
        kube.clear_denials()
    assert refused.value.status == 403 and json.loads(refused.value.body)["details"] == {
        "name": "anything", "group": "networking.k8s.io", "kind": "ingresses"}


# -------------------------------------------------------------------------------------------- helm

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: catalogue\nversion: 0.1.0\n",
    "values.yaml": "image: quay.io/ebi-ait/catalogue:1\nschedule: \"0 3 * * *\"\n",
    "templates/cronjob.yaml": """apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ .Release.Name }}
spec:
  schedule: {{ .Values.schedule | quote }}
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      backoffLimit: 1
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: update
              image: {{ .Values.image }}
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
    "templates/ingress.yaml": """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ .Release.Name }}
  annotations:
    alb.ingress.kubernetes.io/scheme: internet-facing
spec:
  ingressClassName: alb
  rules:
    - host: catalogue.example.org
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: {{ .Release.Name }}, port: {number: 80}}
""",
}


def helm_binary(major: int) -> Path:
    env = os.environ.get(f"MANUAL_DEPLOY_HELM{major}")
    candidate = Path(env) if env else REPO / ".tools" / f"helm{major}"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        pytest.skip(f"helm {major} not found: set MANUAL_DEPLOY_HELM{major} or run "
                    f"`python -m manual_deploy_sandbox.helmbin .tools` (looked at {candidate})")
    return candidate


@pytest.mark.parametrize("major", [3, 4])
def test_helm_installs_upgrades_and_uninstalls_a_cronjob_and_an_ingress(major, kube, kubeconfig_and_client,
                                                                        batch, networking, ns, tmp_path):
    binary = helm_binary(major)
    for name, text in CHART.items():
        (tmp_path / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / name).write_text(text)
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config"),
           "HELM_DATA_HOME": str(tmp_path / "data")}
    release = f"catalogue{major}"

    def helm(*args: str) -> None:
        argv = [str(binary), *args, "--kubeconfig", str(kubeconfig_and_client[0]), "--kube-context", CONTEXT,
                "--namespace", ns]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)
        assert proc.returncode == 0, f"helm {major} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"

    helm("upgrade", "--install", release, str(tmp_path / "chart"), "--wait", "--timeout", "60s")
    assert batch.read_namespaced_cron_job(release, ns).spec.schedule == "0 3 * * *"
    hostname = wait_for(lambda: address_of(networking, ns, release))
    job = kube.run_cronjob(ns, release)
    wait_for(lambda: batch.read_namespaced_job_status(job, ns).status.completion_time)

    helm("upgrade", "--install", release, str(tmp_path / "chart"), "--set", "schedule=30 4 * * *",
         "--wait", "--timeout", "60s")
    upgraded = batch.read_namespaced_cron_job(release, ns)
    assert upgraded.spec.schedule == "30 4 * * *" and upgraded.metadata.generation == 2
    assert upgraded.status.last_schedule_time is not None  # helm's patch leaves the controller's status alone
    assert address_of(networking, ns, release) == hostname

    helm("uninstall", release, "--wait", "--timeout", "60s")
    assert batch.list_namespaced_cron_job(ns).items == [] and batch.list_namespaced_job(ns).items == []
    assert networking.list_namespaced_ingress(ns).items == []


def test_ingress_failures_over_http(kube, networking, core, ns):
    """Another process (a drill, the standalone emulator) injects them through the control plane."""
    with requests.Session() as http:
        http.trust_env = False
        added = http.post(kube.url + "/_emulator/ingress-failures", json={"name": "remote-*"}, timeout=10)
        assert added.status_code == 201 and added.json()["reason"] == "FailedBuildModel"
        assert http.post(kube.url + "/_emulator/ingress-failures", json={"nom": "x"}, timeout=10).status_code == 400
        try:
            ingress_with_service(networking, core, ns, "remote-ui")
            [event] = wait_for(lambda: events_about(core, ns, "Ingress", "remote-ui"))
            assert event.reason == "FailedBuildModel" and address_of(networking, ns, "remote-ui") is None
        finally:
            assert http.delete(kube.url + "/_emulator/ingress-failures", timeout=10).json() == {"failures": []}
    assert kube.ingress_failures == []
