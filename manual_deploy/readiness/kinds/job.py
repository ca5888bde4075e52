"""Job rule: Complete is ready; the Failed condition (e.g. BackoffLimitExceeded) will not recover."""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness import reads
from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, name_of, state, with_worst_pod


def assess(job: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events = name_of(job), list(related.events)
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        return state("Job", name, True, f"complete ({status.get('succeeded') or 0} succeeded)")
    failed = conditions.get("Failed")
    if failed is not None:
        reason = failed.get("reason") or "Failed"
        return state("Job", name, False, f"failed — {reason}: {failed.get('message') or ''}".rstrip(": "),
                     failing=reason, events=events, message=failed.get("message") or "")
    summary = f"running: {status.get('active') or 0} active, {status.get('succeeded') or 0} succeeded, {status.get('failed') or 0} failed"
    summary = with_worst_pod(summary, related.pods, failing_only=True)
    return state("Job", name, False, summary, events=events)


KIND = Kind("Job", "/apis/batch/v1", "jobs", assess, Read.EVENTS | Read.PODS, reads.owned_pods,
            verbs=("get", "list"), why="the chart's Jobs, and the Jobs its CronJobs start", watch_hooks=True,
            remedies={"BackoffLimitExceeded": "the chart's Job failed: read its logs (`kubectl -n {namespace} logs job/{name}`)"})
