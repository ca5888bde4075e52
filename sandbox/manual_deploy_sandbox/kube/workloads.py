"""Jobs, StatefulSets and DaemonSets: no pods, just the status `--wait` looks for.

Charts often carry a migration Job hook or a small StatefulSet; without any controller helm 3 would
wait for them until its timeout. So Jobs complete `pod_start_delay` after creation (or fail with
BackoffLimitExceeded when a container image has an injected failure), and StatefulSets/DaemonSets
report every replica ready and updated. Pods and logs are only emulated for Deployments; a finished
Job gets the job-controller's Event (Completed, or the BackoffLimitExceeded Warning) that diagnostics read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from manual_deploy_sandbox.kube import admission
from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.events import EventRecorder
from manual_deploy_sandbox.kube.kubelet import Failures
from manual_deploy_sandbox.kube.resources import by_path

JOBS = by_path("batch/v1/jobs")
STATEFULSETS = by_path("apps/v1/statefulsets")
DAEMONSETS = by_path("apps/v1/daemonsets")
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"


class InstantWorkloads:
    """Status writers for the workload kinds without a pod-level emulation."""

    def __init__(self, cluster: Cluster, failures: Failures, *, delay: float, clock,
                 events: EventRecorder | None = None) -> None:
        self.cluster, self.failures, self.delay, self.clock = cluster, failures, delay, clock
        self.events = events if events is not None else EventRecorder(cluster)
        self._first_seen: dict[str, float] = {}

    def sync(self) -> None:
        store = self.cluster.store
        jobs = store.list(JOBS, copy=False)
        for job in jobs:
            self._sync_job(job)
        for sts in store.list(STATEFULSETS, copy=False):
            self._write_status(STATEFULSETS, sts, _statefulset_status(sts))
        for ds in store.list(DAEMONSETS, copy=False):
            self._write_status(DAEMONSETS, ds, _daemonset_status(ds))
        live = {job["metadata"]["uid"] for job in jobs}
        self._first_seen = {uid: t for uid, t in self._first_seen.items() if uid in live}

    def _sync_job(self, job: dict[str, Any]) -> None:
        """Write the Job's status; announce its end once, when it first shows as finished."""
        status = self._job_status(job)
        was_finished = job_finished(job.get("status") or {})
        self._write_status(JOBS, job, status)
        if not was_finished and job_finished(status):
            failed = job_finished(status) == "Failed"
            reason, message = ("BackoffLimitExceeded", BACKOFF_MESSAGE) if failed else ("Completed", "Job completed")
            self.events.record(job, reason, message, warning=failed, component="job-controller")

    def _job_status(self, job: dict[str, Any]) -> dict[str, Any]:
        meta, spec = job["metadata"], job.get("spec") or {}
        started = self._first_seen.setdefault(meta["uid"], self.clock())
        old = job.get("status") or {}
        if old.get("completionTime") or any(c.get("type") == "Failed" for c in old.get("conditions") or []):
            return old  # finished Jobs stay finished
        status = {"startTime": old.get("startTime") or admission.now(), "active": 1}
        if self.clock() - started < self.delay:
            return status
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        if any(self.failures.match(c.get("image", "")) for c in containers):
            return {"startTime": status["startTime"], "failed": spec.get("backoffLimit", 6) + 1, "conditions": [
                _true("FailureTarget", "BackoffLimitExceeded", BACKOFF_MESSAGE),
                _true("Failed", "BackoffLimitExceeded", BACKOFF_MESSAGE)]}
        return {"startTime": status["startTime"], "completionTime": admission.now(),
                "succeeded": spec.get("completions", 1), "conditions": [
                    _true("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                    _true("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]}

    def _write_status(self, res, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if status != (obj.get("status") or {}):
            meta = obj["metadata"]
            self.cluster.replace(res, meta["namespace"], meta["name"], {**obj, "status": status}, subresource="status")


def job_finished(status: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once a Job has ended (its terminal condition is True), else None."""
    return next((c["type"] for c in status.get("conditions") or []
                 if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"), None)


def _statefulset_status(sts: dict[str, Any]) -> dict[str, Any]:
    spec, meta = sts.get("spec") or {}, sts["metadata"]
    replicas = spec.get("replicas", 1)
    revision = f"{meta['name']}-{_hash(spec.get('template') or {})}"
    return {"observedGeneration": meta.get("generation", 1), "replicas": replicas, "readyReplicas": replicas,
            "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
            "currentRevision": revision, "updateRevision": revision, "collisionCount": 0}


def _daemonset_status(ds: dict[str, Any]) -> dict[str, Any]:
    return {"observedGeneration": ds["metadata"].get("generation", 1), "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1,
            "numberMisscheduled": 0}


def _true(kind: str, reason: str, message: str) -> dict[str, Any]:
    stamp = admission.now()
    return {"type": kind, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def _hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
