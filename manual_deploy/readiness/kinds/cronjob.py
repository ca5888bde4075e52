"""CronJob rule: ready once created and not suspended; a Job it started for this revision that failed is named.

helm does not wait for CronJobs, and a schedule may not fire during a deploy at all. What a deploy
can see: a suspended CronJob (it will start nothing), and a Job the new revision already started,
which is watched to its end (a warning if it outlasts the final check) and named with its reason
when it fails. Jobs from before the revision are not this deploy's doing and are left out.
"""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, name_of, state
from manual_deploy.timestamps import parse_time

LOGS = "read its logs (`kubectl -n {namespace} logs {owned}`)"
REMEDIES = {
    "Suspended": "the CronJob is suspended (spec.suspend: true) and starts no Job: set `suspend: false` in its chart in "
                 "ingest-kube-deployment, or resume it: `kubectl -n {namespace} patch cronjob {name} --type merge "
                 "-p '{{\"spec\":{{\"suspend\":false}}}}'`",
    "BackoffLimitExceeded": f"a Job the CronJob started failed: {LOGS}; fix the app or the chart",
    "DeadlineExceeded": f"a Job the CronJob started ran past its activeDeadlineSeconds: {LOGS}; fix the job, or give it "
                        "longer in the chart",
}


def assess(cronjob: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events = name_of(cronjob), list(related.events)
    spec = cronjob.get("spec") or {}
    if spec.get("suspend"):
        return state("CronJob", name, False, "suspended (spec.suspend: true): it starts no Job", failing="Suspended",
                     events=events, message="spec.suspend is true: the CronJob starts no Job")
    scheduled = f"scheduled {spec.get('schedule') or '?'}"
    job = _newest(related)
    if job is None:
        return state("CronJob", name, True, scheduled)
    job_name, conditions = name_of(job), _conditions(job)
    failed = conditions.get("Failed")
    if failed is not None:
        reason, message = failed.get("reason") or "Failed", failed.get("message") or ""
        return state("CronJob", name, False, f"job {job_name} failed — {reason}: {message}".rstrip(": "),
                     failing=reason, events=events, message=message, owned=f"job/{job_name}")
    if "Complete" in conditions:
        return state("CronJob", name, True, f"{scheduled}; job {job_name} complete")
    return state("CronJob", name, False, f"job {job_name} running", events=events)


def _newest(related: Related) -> dict[str, Any] | None:
    """The newest Job it started since the revision was written (any, when that time is not known)."""
    jobs = [(parse_time((j.get("metadata") or {}).get("creationTimestamp")), name_of(j), j) for j in related.jobs]
    jobs = [(when, name, job) for when, name, job in jobs
            if related.since is None or (when is not None and when >= related.since)]
    return max(jobs, key=lambda found: (found[0].timestamp() if found[0] else 0.0, found[1]))[2] if jobs else None


def _conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


KIND = Kind("CronJob", "/apis/batch/v1", "cronjobs", assess, Read.EVENTS | Read.JOBS, rank=2, verbs=("get", "list", "create", "patch"),
            why="the chart's CronJobs (helm writes them; the watch reads them)", remedies=REMEDIES, settles_after=True)
