"""The readiness rules on apiserver JSON: what a person reads for each reason, and which states fail.

Fixtures are shaped like `kubectl get -o json` output of EKS (camelCase, zero counts omitted).
"""

from __future__ import annotations

import datetime as dt

import pytest

from manual_deploy.live_deployment import LiveDeployment
from manual_deploy.readiness.kinds import Related, daemonset, deployment, job, pod, service, statefulset
from manual_deploy.readiness.kinds import persistentvolumeclaim as pvc
from manual_deploy.readiness.resource_state import Failure, ResourceState

NS = "prod-environment"
NOW = dt.datetime(2026, 11, 26, 18, 10, 0, tzinfo=dt.timezone.utc)


def stamp(minutes_ago: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(kind: str, name: str, reason: str, message: str, *, count: int = 1, warning: bool = True,
          minutes_ago: float = 1, component: str = "kubelet") -> dict:
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{name}.18{reason.lower()[:6]}", "namespace": NS, "creationTimestamp": stamp(minutes_ago + 1)},
        "involvedObject": {"kind": kind, "namespace": NS, "name": name, "apiVersion": "v1", "uid": "u-1"},
        "reason": reason, "message": message, "type": "Warning" if warning else "Normal", "count": count,
        "firstTimestamp": stamp(minutes_ago + 1), "lastTimestamp": stamp(minutes_ago),
        "source": {"component": component}, "reportingComponent": component,
    }


# --- pods ------------------------------------------------------------------------------------------------

POD = "ingest-broker-7d9c8b6f5-x2x9q"


def a_pod(*, phase="Pending", conditions=(), statuses=None, init=None) -> dict:
    status = {"phase": phase, "conditions": list(conditions), "qosClass": "Burstable", "startTime": stamp(5)}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init is not None:
        status["initContainerStatuses"] = init
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": POD, "namespace": NS, "uid": "p-1", "labels": {"app": "ingest-broker"}},
            "spec": {"containers": [{"name": "broker", "image": "quay.io/ebi-ait/ingest-broker:b1"}]},
            "status": status}


def cond(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict:
    found = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": stamp(5)}
    if reason:
        found.update(reason=reason, message=message)
    return found


def waiting(reason: str, message: str | None = None, *, restarts: int = 0, last: dict | None = None) -> list[dict]:
    state = {"reason": reason, **({"message": message} if message else {})}
    return [{"name": "broker", "image": "quay.io/ebi-ait/ingest-broker:b1", "imageID": "", "ready": False,
             "started": False, "restartCount": restarts, "lastState": last or {}, "state": {"waiting": state}}]


def running(ready: bool, *, restarts: int = 0, last: dict | None = None) -> list[dict]:
    return [{"name": "broker", "image": "quay.io/ebi-ait/ingest-broker:b1", "imageID": "quay.io/x@sha256:1",
             "containerID": "containerd://1", "ready": ready, "started": True, "restartCount": restarts,
             "lastState": last or {}, "state": {"running": {"startedAt": stamp(3)}}}]


SCHEDULED = [cond("PodScheduled", True), cond("Initialized", True)]
NOT_READY = [*SCHEDULED, cond("Ready", False, "ContainersNotReady", "containers with unready status: [broker]"),
             cond("ContainersReady", False, "ContainersNotReady", "containers with unready status: [broker]")]


@pytest.mark.parametrize(("reason", "message", "summary"), [
    ("ImagePullBackOff", 'Back-off pulling image "quay.io/ebi-ait/ingest-broker:b1"',
     'ImagePullBackOff (container broker): Back-off pulling image "quay.io/ebi-ait/ingest-broker:b1"'),
    ("ErrImagePull", "rpc error: code = NotFound desc = not found",
     "ErrImagePull (container broker): rpc error: code = NotFound desc = not found"),
    ("CrashLoopBackOff", f"back-off 40s restarting failed container=broker pod={POD}_{NS}(p-1)",
     f"CrashLoopBackOff (container broker): back-off 40s restarting failed container=broker pod={POD}_{NS}(p-1)"),
    ("CreateContainerConfigError", f"couldn't find key AWS_ACCESS_KEY_ID in Secret {NS}/aws-keys",
     f"CreateContainerConfigError (container broker): couldn't find key AWS_ACCESS_KEY_ID in Secret {NS}/aws-keys"),
    ("CreateContainerError", "failed to reserve container name",
     "CreateContainerError (container broker): failed to reserve container name"),
    ("InvalidImageName", 'Failed to apply default image tag "quay.io/x:": couldn\'t parse image name',
     'InvalidImageName (container broker): Failed to apply default image tag "quay.io/x:": couldn\'t parse image name'),
])
def test_a_container_waiting_for_a_reason_that_waiting_will_not_fix_is_failing(reason, message, summary):
    found = pod.assess(a_pod(conditions=NOT_READY, statuses=waiting(reason, message)))
    assert found == ResourceState("Pod", POD, False, summary, reason, (), "broker", message)


def test_an_init_container_that_cannot_start_fails_the_pod_too():
    found = pod.assess(a_pod(conditions=NOT_READY, init=waiting("ImagePullBackOff", "Back-off pulling image \"busybox:nope\""),
                             statuses=waiting("PodInitializing")))
    assert (found.failing, found.container) == ("ImagePullBackOff", "broker")


def test_an_oom_killed_container_is_failing_even_while_it_runs_again():
    last = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": stamp(3), "finishedAt": stamp(2)}}
    found = pod.assess(a_pod(phase="Running", conditions=NOT_READY, statuses=running(False, restarts=3, last=last)))
    assert found.summary == "OOMKilled (container broker): exit code 137, restarted 3×"
    assert found.failing == "OOMKilled" and not found.ready


def test_container_creating_is_plain_waiting():
    found = pod.assess(a_pod(conditions=NOT_READY, statuses=waiting("ContainerCreating")))
    assert (found.ready, found.failing, found.summary) == (False, None, "Pending — ContainerCreating")


UNSCHEDULABLE = ("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: "
                 "1 No preemption victims found for incoming pod.")


def test_an_unschedulable_pod_fails_with_the_schedulers_message():
    unscheduled = a_pod(conditions=[cond("PodScheduled", False, "Unschedulable", UNSCHEDULABLE)])
    events = [event("Pod", POD, "FailedScheduling", UNSCHEDULABLE, count=4, component="default-scheduler")]
    found = pod.assess(unscheduled, Related(events, now=NOW))
    assert found.summary == f"Pending — FailedScheduling: {UNSCHEDULABLE}"
    assert found.failing == "FailedScheduling"
    assert found.events == (f"Warning FailedScheduling: {UNSCHEDULABLE} (4×)",)


def test_the_failed_scheduling_event_speaks_when_the_condition_has_no_message():
    unscheduled = a_pod(conditions=[cond("PodScheduled", False, "Unschedulable", None)])
    events = [event("Pod", POD, "FailedScheduling", UNSCHEDULABLE)]
    assert pod.assess(unscheduled, Related(events, now=NOW)).summary == f"Pending — FailedScheduling: {UNSCHEDULABLE}"


def test_an_unschedulable_pod_is_not_failing_while_the_autoscaler_adds_a_node():
    unscheduled = a_pod(conditions=[cond("PodScheduled", False, "Unschedulable", UNSCHEDULABLE)])
    scale_up = event("Pod", POD, "TriggeredScaleUp", "pod triggered scale-up: [{eks-ingest-ng 1->2 (max: 4)}]",
                     warning=False, component="cluster-autoscaler", minutes_ago=2)
    failed = event("Pod", POD, "FailedScheduling", UNSCHEDULABLE, minutes_ago=0.5)
    found = pod.assess(unscheduled, Related([failed, scale_up], now=NOW))
    assert found.failing is None
    assert found.summary == "Pending — waiting for a new node (TriggeredScaleUp: pod triggered scale-up: [{eks-ingest-ng 1->2 (max: 4)}])"
    # an old scale-up (the node never came) or one the autoscaler later gave up on does not count
    stale = {**scale_up, "lastTimestamp": stamp(30)}
    assert pod.assess(unscheduled, Related([failed, stale], now=NOW)).failing == "FailedScheduling"
    gave_up = event("Pod", POD, "NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size reached",
                    warning=False, component="cluster-autoscaler", minutes_ago=1)
    assert pod.assess(unscheduled, Related([failed, scale_up, gave_up], now=NOW)).failing == "FailedScheduling"


def test_a_failing_readiness_probe_says_the_probes_last_message_and_how_often():
    events = [event("Pod", POD, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500", count=7, minutes_ago=3),
              event("Pod", POD, "Unhealthy", "Readiness probe failed: Get \"http://10.0.1.7:8080/health\": connection refused",
                    count=5, minutes_ago=0.2)]
    found = pod.assess(a_pod(phase="Running", conditions=NOT_READY, statuses=running(False)), Related(events))
    assert found.summary == ('Running, not ready — readiness probe failing: Readiness probe failed: '
                             'Get "http://10.0.1.7:8080/health": connection refused (12×)')
    assert found.failing == "Unhealthy"


def test_running_but_not_ready_without_probe_events_is_waiting():
    found = pod.assess(a_pod(phase="Running", conditions=NOT_READY, statuses=running(False)))
    assert (found.failing, found.summary) == (None, "Running, not ready — containers with unready status: [broker]")


@pytest.mark.parametrize(("reason", "message"), [
    ("FailedMount", 'MountVolume.SetUp failed for volume "aws-keys" : secret "aws-keys" not found'),
    ("FailedAttachVolume", 'AttachVolume.Attach failed for volume "pvc-3c1e" : rpc error: code = Internal'),
])
def test_a_pod_stuck_creating_on_a_volume_fails_with_the_volume_message(reason, message):
    found = pod.assess(a_pod(conditions=NOT_READY, statuses=waiting("ContainerCreating")),
                       Related([event("Pod", POD, reason, message, count=4)]))
    assert found.summary == f"ContainerCreating — {reason}: {message} (4×)"
    assert found.failing == reason


def test_a_ready_pod_is_ready():
    ready = a_pod(phase="Running", conditions=[*SCHEDULED, cond("Ready", True), cond("ContainersReady", True)],
                  statuses=running(True))
    assert pod.assess(ready) == ResourceState("Pod", POD, True, "Running, ready")
    assert pod.is_ready(ready)


# --- deployments -----------------------------------------------------------------------------------------


def a_deployment(*, replicas=1, generation=2, observed=2, updated=None, available=None, total=None, conditions=(),
                 revision="2") -> dict:
    status = {"observedGeneration": observed, "conditions": list(conditions)}
    for key, value in (("replicas", total), ("updatedReplicas", updated), ("availableReplicas", available),
                       ("readyReplicas", available)):
        if value:  # the apiserver omits zero counts
            status[key] = value
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ingest-broker", "namespace": NS, "uid": "d-uid", "generation": generation,
                         "annotations": {"deployment.kubernetes.io/revision": revision}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "ingest-broker"}},
                     "template": {"metadata": {"labels": {"app": "ingest-broker"}},
                                  "spec": {"containers": [{"name": "broker", "image": "quay.io/ebi-ait/ingest-broker:b1"}]}}},
            "status": status}


@pytest.mark.parametrize(("kwargs", "summary"), [
    ({"generation": 3, "observed": 2}, "spec update not yet observed by the deployment controller"),
    ({"replicas": 2, "updated": 1, "total": 2}, "1 of 2 new replicas updated"),
    ({"replicas": 1, "updated": 1, "total": 2, "available": 1}, "1 old replicas pending termination"),
    ({"replicas": 1, "updated": 1, "total": 1}, "0 of 1 updated replicas available"),
])
def test_a_progressing_deployment_says_what_it_waits_for(kwargs, summary):
    found = deployment.assess(a_deployment(**kwargs))
    assert (found.ready, found.failing, found.summary) == (False, None, summary)


def test_a_rolled_out_deployment_is_ready_and_its_state_lists_the_template_images():
    done = a_deployment(replicas=2, updated=2, total=2, available=2)
    assert deployment.assess(done) == ResourceState("Deployment", "ingest-broker", True, "rolled out: 2/2 available")
    live = LiveDeployment.from_dict(done)
    assert (live.desired, live.updated, live.available, live.images) == (2, 2, 2, ("quay.io/ebi-ait/ingest-broker:b1",))


def test_a_deployment_without_replicas_in_spec_wants_one():
    assert LiveDeployment.from_dict({"metadata": {"name": "x"}, "spec": {}, "status": {}}).verdict().message == \
        "0 of 1 new replicas updated"


def test_a_deployment_past_its_progress_deadline_is_failing():
    deadline = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "ingest-broker-7d9c8b6f5" has timed out progressing.'}
    found = deployment.assess(a_deployment(updated=1, total=1, conditions=[deadline]))
    assert found.summary == 'exceeded its progress deadline: ReplicaSet "ingest-broker-7d9c8b6f5" has timed out progressing.'
    assert found.failing == "ProgressDeadlineExceeded"


def test_a_deployments_summary_names_its_failing_new_pod():
    stuck = ResourceState("Pod", "ingest-broker-7d9-a", False, "Pending — ContainerCreating")
    broken = ResourceState("Pod", "ingest-broker-7d9-b", False, "ImagePullBackOff (container broker): Back-off", "ImagePullBackOff")
    found = deployment.assess(a_deployment(updated=1, total=1), Related(pods=(stuck, broken)))
    assert found.summary == "0 of 1 updated replicas available (pod ingest-broker-7d9-b: ImagePullBackOff (container broker): Back-off)"
    assert found.failing is None  # the pod carries the failing key; its logs are the evidence


def rs(name: str, revision: int, created: str, owner: str = "d-uid") -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": {"pod-template-hash": name[-4:]},
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest-broker",
                                              "uid": owner, "controller": True}]}}


SECOND = "2026-11-26T18:00:00Z"


def test_two_replica_sets_created_in_the_same_second_are_told_apart_by_revision():
    old, new = rs("ingest-broker-zzzz", 1, SECOND), rs("ingest-broker-aaaa", 2, SECOND)
    assert deployment.current_replica_set(a_deployment(revision="2"), [old, new]) is new
    unannotated = a_deployment()
    del unannotated["metadata"]["annotations"]
    assert deployment.current_replica_set(unannotated, [new, old]) is new


def test_after_a_rollback_the_reactivated_older_replica_set_is_the_current_one():
    reactivated, abandoned = rs("ingest-broker-good", 3, SECOND), rs("ingest-broker-bad0", 2, "2026-11-26T18:05:00Z")
    assert deployment.current_replica_set(a_deployment(revision="3"), [abandoned, reactivated]) is reactivated
    assert deployment.pod_selector(a_deployment(), reactivated) == "app=ingest-broker,pod-template-hash=good"


def test_replica_sets_of_other_owners_are_ignored():
    foreign, mine = rs("ingest-broker-othr", 9, SECOND, owner="someone-else"), rs("ingest-broker-mine", 1, SECOND)
    assert deployment.current_replica_set(a_deployment(revision="1"), [foreign, mine]) is mine
    assert deployment.current_replica_set(a_deployment(revision="1"), [foreign]) is None


# --- persistent volume claims ------------------------------------------------------------------------------

CLAIM = "spreadsheet-storage-claim"


def a_claim(phase: str = "Pending", volume: str | None = None) -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": "retained-gp2", "volumeMode": "Filesystem"}
    if volume:
        spec["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": NS, "uid": "c-1"}, "spec": spec, "status": {"phase": phase}}


def test_a_bound_claim_is_ready():
    assert pvc.assess(a_claim("Bound", "pvc-3c1e")) == ResourceState("PersistentVolumeClaim", CLAIM, True, "Bound to pvc-3c1e")


def test_a_claim_whose_storage_class_is_missing_fails_with_the_provisioners_words():
    events = [event("PersistentVolumeClaim", CLAIM, "ProvisioningFailed",
                    'storageclass.storage.k8s.io "retained-gp2" not found', count=3,
                    component="persistentvolume-controller")]
    found = pvc.assess(a_claim(), Related(events))
    assert found.summary == 'Pending — storageclass "retained-gp2" not found (ProvisioningFailed, 3×)'
    assert found.failing == "ProvisioningFailed"
    assert found.message == 'storageclass.storage.k8s.io "retained-gp2" not found'
    assert found.events == ('Warning ProvisioningFailed: storageclass.storage.k8s.io "retained-gp2" not found (3×)',)


def test_a_claim_with_no_volume_to_bind_to_fails():
    events = [event("PersistentVolumeClaim", CLAIM, "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set", count=9)]
    found = pvc.assess(a_claim(), Related(events))
    assert found.summary == ("Pending — no persistent volumes available for this claim and no storage class is set "
                             "(FailedBinding, 9×)")
    assert found.failing == "FailedBinding"


WFFC = "waiting for first consumer to be created before binding"


def test_a_claim_waiting_for_its_first_consumer_waits_while_the_release_mounts_it():
    events = [event("PersistentVolumeClaim", CLAIM, "WaitForFirstConsumer", WFFC, warning=False, count=2)]
    found = pvc.assess(a_claim(), Related(events))
    assert (found.failing, found.summary) == (None, f"Pending — {WFFC} (WaitForFirstConsumer, 2×)")
    unmounted = pvc.assess(a_claim(), Related(events, release=()))  # no workload of the release mounts it
    assert unmounted.failing == "NoConsumer"
    assert unmounted.summary == ("Pending — waits for a pod to mount it, and no workload of the release does "
                                 "(WaitForFirstConsumer)")


def test_a_pending_claim_without_events_is_waiting():
    assert pvc.assess(a_claim()).summary == "Pending — no events yet"


def test_the_claims_a_release_mounts_are_read_from_its_pod_templates():
    broker = a_deployment()
    broker["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}},
                                                     {"name": "keys", "secret": {"secretName": "aws-keys"}}]
    cron = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "volumes": [{"name": "x", "persistentVolumeClaim": {"claimName": "backups"}}]}}}}}}
    assert pvc.claims_mounted([broker, cron, a_claim()]) == {CLAIM, "backups"}


# --- services ---------------------------------------------------------------------------------------------


def a_service(kind: str, ingress: list | None = None) -> dict:
    port = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    if kind != "ClusterIP":
        port["nodePort"] = 31080
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingest-broker-service", "namespace": NS},
            "spec": {"type": kind, "clusterIP": "10.100.7.7", "ports": [port], "selector": {"app": "ingest-broker"}},
            "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


def test_a_node_port_service_is_ready_once_it_exists():
    assert service.assess(a_service("NodePort")) == ResourceState("Service", "ingest-broker-service", True, "NodePort 31080")


def test_a_load_balancer_waits_for_its_address_and_fails_when_the_cloud_refuses():
    assert service.assess(a_service("LoadBalancer")).summary == "no load balancer address yet"
    assert service.assess(a_service("LoadBalancer")).failing is None
    refused = [event("Service", "ingest-broker-service", "SyncLoadBalancerFailed",
                     "Error syncing load balancer: failed to ensure load balancer: TooManyLoadBalancers", count=2,
                     component="service-controller")]
    found = service.assess(a_service("LoadBalancer"), Related(refused))
    assert found.summary == ("no load balancer address — Error syncing load balancer: failed to ensure load balancer: "
                             "TooManyLoadBalancers (SyncLoadBalancerFailed, 2×)")
    assert found.failing == "SyncLoadBalancerFailed"
    live = service.assess(a_service("LoadBalancer", [{"hostname": "a1b2.elb.eu-west-2.amazonaws.com"}]))
    assert (live.ready, live.summary) == (True, "LoadBalancer at a1b2.elb.eu-west-2.amazonaws.com")


# --- statefulsets, daemonsets, jobs ---------------------------------------------------------------------------


def a_statefulset(**status) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "mongo", "generation": 2},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "mongo"}}},
            "status": {"observedGeneration": 2, **status}}


@pytest.mark.parametrize(("status", "ready", "summary"), [
    ({"observedGeneration": 1}, False, "spec update not yet observed by the statefulset controller"),
    ({"readyReplicas": 2, "updatedReplicas": 3}, False, "2 of 3 pods ready"),
    ({"readyReplicas": 3, "updatedReplicas": 2, "updateRevision": "mongo-7b"}, False, "2 of 3 pods updated to revision mongo-7b"),
    ({"readyReplicas": 3, "updatedReplicas": 3, "currentRevision": "mongo-6a", "updateRevision": "mongo-7b"}, False,
     "rolling update to mongo-7b not finished (current mongo-6a)"),
    ({"readyReplicas": 3, "updatedReplicas": 3, "currentRevision": "mongo-7b", "updateRevision": "mongo-7b"}, True,
     "rolled out: 3/3 ready"),
])
def test_statefulset_rollout(status, ready, summary):
    found = statefulset.assess(a_statefulset(**status))
    assert (found.ready, found.summary) == (ready, summary)


def test_only_pods_of_the_update_revision_are_a_statefulsets_new_pods():
    sts = a_statefulset(updateRevision="mongo-7b")
    assert statefulset.is_new_pod(sts, {"metadata": {"labels": {"controller-revision-hash": "mongo-7b"}}})
    assert not statefulset.is_new_pod(sts, {"metadata": {"labels": {"controller-revision-hash": "mongo-6a"}}})


@pytest.mark.parametrize(("status", "ready", "summary"), [
    ({"desiredNumberScheduled": 3, "updatedNumberScheduled": 1, "numberReady": 3}, False, "1 of 3 nodes run the updated pod"),
    ({"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberReady": 2, "numberAvailable": 2}, False,
     "2 of 3 updated pods ready"),
    ({"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberReady": 3, "numberAvailable": 3}, True,
     "rolled out: 3/3 ready"),
])
def test_daemonset_rollout(status, ready, summary):
    ds = {"kind": "DaemonSet", "metadata": {"name": "fluent-bit", "generation": 1}, "status": {"observedGeneration": 1, **status}}
    found = daemonset.assess(ds)
    assert (found.ready, found.summary) == (ready, summary)


def test_a_failed_job_says_its_condition_and_a_complete_one_is_ready():
    failed = {"kind": "Job", "metadata": {"name": "db-migrate"}, "status": {"failed": 7, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}
    found = job.assess(failed)
    assert found.summary == "failed — BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert found.failing == "BackoffLimitExceeded"
    complete = {"kind": "Job", "metadata": {"name": "db-migrate"}, "status": {"succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True"}]}}
    assert job.assess(complete) == ResourceState("Job", "db-migrate", True, "complete (1 succeeded)")
    running = job.assess({"kind": "Job", "metadata": {"name": "db-migrate"}, "status": {"active": 1}})
    assert (running.ready, running.failing, running.summary) == (False, None, "running: 1 active, 0 succeeded, 0 failed")


# --- the failure report ----------------------------------------------------------------------------------------


def test_a_pod_failure_reports_events_and_logs_like_the_rollout_verifier_did():
    failure = Failure("Pod", POD, "CrashLoopBackOff", "back-off 10s", ["Warning BackOff: Back-off restarting (3×)"],
                      "broker", ["boom", "Traceback"])
    assert failure.report() == (f"pod {POD} container broker: CrashLoopBackOff back-off 10s\n"
                                "  recent events:\n    Warning BackOff: Back-off restarting (3×)\n"
                                "  last 2 log lines of broker:\n    boom\n    Traceback")
    claim = Failure("PersistentVolumeClaim", CLAIM, "ProvisioningFailed", "Pending — storageclass \"retained-gp2\" not found")
    assert claim.report() == f'PersistentVolumeClaim {CLAIM}: ProvisioningFailed Pending — storageclass "retained-gp2" not found'
