"""The CronJob controller without its clock: a CronJob starts a Job when a test or the drill says so.

A real controller starts a Job at each scheduled time; tests cannot wait for a cron minute, so
there is no timer here and `run()` stands for "the schedule fired now". Everything else is the real
controller's (cronjob_controllerv2): the Job is named `<cronjob>-<scheduled time in minutes since
the epoch>`, carries the jobTemplate's labels and annotations plus the scheduled-timestamp
annotation and a controller ownerReference to the CronJob; status.active lists the running Jobs,
status.lastScheduleTime / lastSuccessfulTime follow them; finished Jobs beyond the history limits
are deleted; the Events (SuccessfulCreate, SawCompletedJob, SuccessfulDelete) are the controller's.
A suspended CronJob starts nothing, and neither does one whose concurrencyPolicy is Forbid while a
Job of it still runs (a real controller skips that schedule too).

The Jobs themselves run as every Job in the emulator does (workloads.py): they complete, or fail
with BackoffLimitExceeded when their image matches an injected failure.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.events import EventRecorder
from manual_deploy_sandbox.kube.resources import by_path
from manual_deploy_sandbox.kube.workloads import JOBS, job_finished

CRONJOBS = by_path("batch/v1/cronjobs")
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"
COMPONENT = "cronjob-controller"
MAX_NAME_TRIES = 1000  # scheduled minutes tried for a free Job name (each earlier run took one)


class CronJobController:
    """Starts Jobs of CronJobs on demand and keeps the CronJobs' status in step with their Jobs."""

    def __init__(self, cluster: Cluster, events: EventRecorder) -> None:
        self.cluster, self.events = cluster, events

    def run(self, namespace: str, name: str) -> str | None:
        """Start a Job as the schedule would now; its name, or None when the controller would skip the run."""
        cronjob = self.cluster.get(CRONJOBS, namespace, name)
        spec = cronjob.get("spec") or {}
        if spec.get("suspend"):
            return None
        running = self._active_jobs(cronjob)
        policy = spec.get("concurrencyPolicy", "Allow")
        if running and policy == "Forbid":
            self.events.record(cronjob, "JobAlreadyActive", "Not starting job because prior execution is running "
                               "and concurrency policy is Forbid", component=COMPONENT, repeat=True)
            return None
        replaced = {j["metadata"]["uid"] for j in running} if policy == "Replace" else set()
        for job in running:
            if job["metadata"]["uid"] in replaced:
                self._delete_job(cronjob, job)
        scheduled = self._free_minute(cronjob)
        job = self.cluster.create(JOBS, job_from_template(cronjob, scheduled), namespace)
        self.events.record(cronjob, "SuccessfulCreate", f"Created job {job['metadata']['name']}",
                           component=COMPONENT, repeat=True)
        status = copy.deepcopy(cronjob.get("status") or {})
        kept = [ref for ref in status.get("active") or [] if ref.get("uid") not in replaced]
        status["active"] = [*kept, _reference(job)]
        status["lastScheduleTime"] = _stamp(scheduled)
        self._write_status(cronjob, status)
        return job["metadata"]["name"]

    def sync(self) -> None:
        """Drop finished Jobs from status.active (noting the last success), then prune the history."""
        jobs = self.cluster.store.list(JOBS, copy=False)
        for cronjob in self.cluster.store.list(CRONJOBS, copy=False):
            if cronjob["metadata"].get("deletionTimestamp"):
                continue
            owned = [j for j in jobs if _controller_uid(j) == cronjob["metadata"]["uid"]]
            self._sync_status(cronjob, owned)
            self._prune(cronjob, owned)

    # ----------------------------------------------------------------------------------------- helpers

    def _sync_status(self, cronjob: dict[str, Any], owned: list[dict[str, Any]]) -> None:
        status = copy.deepcopy(cronjob.get("status") or {})
        by_uid = {j["metadata"]["uid"]: j for j in owned}
        still = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            outcome = job_finished((job or {}).get("status") or {})
            if job is None:
                self.events.record(cronjob, "MissingJob", f"Active job went missing: {ref.get('name')}",
                                   component=COMPONENT, repeat=True)
            elif outcome is None:
                still.append(ref)
            else:
                self.events.record(cronjob, "SawCompletedJob", f"Saw completed job: {ref.get('name')}, "
                                   f"status: {outcome}", component=COMPONENT, repeat=True)
                completed = (job.get("status") or {}).get("completionTime")
                if outcome == "Complete" and completed and completed > status.get("lastSuccessfulTime", ""):
                    status["lastSuccessfulTime"] = completed
        if still:
            status["active"] = still
        else:
            status.pop("active", None)
        self._write_status(cronjob, status)

    def _prune(self, cronjob: dict[str, Any], owned: list[dict[str, Any]]) -> None:
        """Delete the oldest finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit."""
        spec = cronjob.get("spec") or {}
        for outcome, field, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                        ("Failed", "failedJobsHistoryLimit", 1)):
            done = sorted((j for j in owned if job_finished(j.get("status") or {}) == outcome),
                          key=lambda j: ((j.get("status") or {}).get("startTime") or "", j["metadata"]["name"]))
            for job in done[:max(len(done) - int(spec.get(field, default)), 0)]:
                self._delete_job(cronjob, job)

    def _delete_job(self, cronjob: dict[str, Any], job: dict[str, Any]) -> None:
        meta = job["metadata"]
        if self.cluster.find(JOBS, meta["namespace"], meta["name"]) is None:
            return
        self.cluster.delete(JOBS, meta["namespace"], meta["name"], propagation="Background")
        self.events.record(cronjob, "SuccessfulDelete", f"Deleted job {meta['name']}", component=COMPONENT,
                           repeat=True)

    def _active_jobs(self, cronjob: dict[str, Any]) -> list[dict[str, Any]]:
        """The CronJob's Jobs that have not finished yet."""
        return [j for j in self.cluster.store.list(JOBS, cronjob["metadata"]["namespace"], copy=False)
                if _controller_uid(j) == cronjob["metadata"]["uid"] and not job_finished(j.get("status") or {})]

    def _free_minute(self, cronjob: dict[str, Any]) -> dt.datetime:
        """This minute, or the minute after the last run: each run needs its own Job name, as each
        scheduled time has one in a real cluster (runs called twice in a minute take the next ones)."""
        now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
        last = (cronjob.get("status") or {}).get("lastScheduleTime")
        minute = max(now, _parse(last) + dt.timedelta(minutes=1)) if last else now
        meta = cronjob["metadata"]
        for _ in range(MAX_NAME_TRIES):
            if self.cluster.find(JOBS, meta["namespace"], job_name(meta["name"], minute)) is None:
                return minute
            minute += dt.timedelta(minutes=1)
        raise RuntimeError(f"no free Job name for CronJob {meta['name']} in {MAX_NAME_TRIES} minutes")

    def _write_status(self, cronjob: dict[str, Any], status: dict[str, Any]) -> None:
        if status != (cronjob.get("status") or {}):
            meta = cronjob["metadata"]
            current = self.cluster.get(CRONJOBS, meta["namespace"], meta["name"])
            self.cluster.replace(CRONJOBS, meta["namespace"], meta["name"], {**current, "status": status},
                                 subresource="status")


def job_name(cronjob_name: str, scheduled: dt.datetime) -> str:
    """`<cronjob>-<minutes since the epoch>`, the real controller's name for the Job of one schedule."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cronjob: dict[str, Any], scheduled: dt.datetime) -> dict[str, Any]:
    """The Job a CronJob starts: its jobTemplate, named for the schedule and owned by the CronJob."""
    meta = cronjob["metadata"]
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    template_meta = template.get("metadata") or {}
    job_meta: dict[str, Any] = {
        "name": job_name(meta["name"], scheduled), "namespace": meta["namespace"],
        "annotations": {**(template_meta.get("annotations") or {}), SCHEDULED_AT: _stamp(scheduled)},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"], "uid": meta["uid"],
                             "controller": True, "blockOwnerDeletion": True}]}
    if template_meta.get("labels"):
        job_meta["labels"] = dict(template_meta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def _reference(job: dict[str, Any]) -> dict[str, Any]:
    """The ObjectReference status.active holds for a running Job."""
    meta = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "namespace": meta["namespace"],
            "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}


def _controller_uid(obj: dict[str, Any]) -> str | None:
    return next((ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("controller")),
                None)


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
