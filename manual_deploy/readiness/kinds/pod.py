"""Pod rules: the states of a new pod that waiting will not fix, and why a pod is not ready yet.

Each failing state is named by the reason Kubernetes itself shows (kubectl get pods' STATUS, or
the Event's reason), so the key matches what a person would search for.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from manual_deploy.readiness.kinds import Access, Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, because, event_time, latest, name_of, state

# Container states only a new image fixes (the verb says how to give one): listed here only.
IMAGE_FAULTS_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerError",
                                  "InvalidImageName"})
FAILING_WAITING = IMAGE_FAULTS_WAITING | {"CreateContainerConfigError"}
FAILING_TERMINATED = frozenset({"OOMKilled"})
SCALE_UP_WINDOW = dt.timedelta(minutes=10)  # a new EKS node joins in 2-5 minutes; after that, scheduling is stuck

REMEDIES = {
    "FailedScheduling": "the cluster cannot place the pod (the scheduler's words are above): free or add nodes, or lower "
                        "the chart's resource requests (`kubectl describe nodes` shows what is allocated)",
    "Unhealthy": "the app runs but its probe keeps failing: read its logs (`kubectl logs -n {namespace} <pod>`) and check "
                 "the probe's path and port; fix the app or the chart",
    "CreateContainerConfigError": "create the Secret or ConfigMap key the pod needs in {namespace} "
                                  "(`kubectl -n {namespace} get secret`), or fix the reference in the chart",
    "FailedAttachVolume": "the volume cannot attach (Multi-Attach: the old pod still holds a ReadWriteOnce volume; "
                          "`kubectl -n {namespace} get pods -o wide` shows where); free it",
    "FailedMount": "a volume cannot be mounted: create the Secret or ConfigMap (or the key) it names in {namespace}, "
                   "or free the disk it waits for (the events above say which)",
}


def assess(pod: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events, now = name_of(pod), list(related.events), related.now
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])

    broken = _broken_container(statuses)
    if broken is not None:
        reason, container, message = broken
        return state("Pod", name, False, f"{reason} (container {container}): {message}".rstrip(": "),
                     failing=reason, events=events, container=container, message=message)
    if phase == "Succeeded":
        return state("Pod", name, True, "Succeeded")
    if phase == "Failed":
        reason = status.get("reason") or "Failed"
        return state("Pod", name, False, f"Failed — {reason}: {status.get('message') or ''}".rstrip(": "),
                     failing=reason, events=events, message=status.get("message") or "")
    scheduled = _condition(status, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return _unschedulable(name, scheduled, events, now or dt.datetime.now(dt.timezone.utc))
    waiting = next((s["state"]["waiting"] for s in statuses if (s.get("state") or {}).get("waiting")), None)
    # the attach error is the cause and FailedMount its echo: one stable key, or grace would restart at every echo
    volume = because(events, "FailedAttachVolume") or because(events, "FailedMount")
    if volume is not None and (phase == "Pending" or (waiting or {}).get("reason") in ("ContainerCreating", "PodInitializing")):
        reason, message, count = volume
        return state("Pod", name, False, f"{(waiting or {}).get('reason') or phase} — {reason}: {message} ({count}×)",
                     failing=reason, events=events, message=message)
    ready = _condition(status, "Ready")
    if phase == "Running" and ready is not None and ready.get("status") == "True":
        return state("Pod", name, True, "Running, ready")
    if phase == "Running":
        unhealthy = because(events, "Unhealthy")
        if unhealthy is not None:
            _, message, count = unhealthy
            probe = "liveness" if message.lower().startswith("liveness") else "readiness"
            return state("Pod", name, False, f"Running, not ready — {probe} probe failing: {message} ({count}×)",
                         failing="Unhealthy", events=events, message=f"{message} ({count}×)")
        why = (ready or {}).get("message") or "containers not ready yet"
        return state("Pod", name, False, f"Running, not ready — {why}", events=events)
    detail = (waiting or {}).get("reason") or "waiting to start"
    return state("Pod", name, False, f"{phase} — {detail}", events=events)


def _broken_container(statuses: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """(reason, container, message) of a container in a state that waiting will not fix."""
    for status in statuses:
        current = status.get("state") or {}
        waiting = current.get("waiting") or {}
        if waiting.get("reason") in FAILING_WAITING:
            return waiting["reason"], status.get("name") or "?", (waiting.get("message") or "").strip()
        for terminated in (current.get("terminated"), (status.get("lastState") or {}).get("terminated")):
            if terminated and terminated.get("reason") in FAILING_TERMINATED:
                restarts = status.get("restartCount") or 0
                detail = f"exit code {terminated.get('exitCode')}" + (f", restarted {restarts}×" if restarts else "")
                return terminated["reason"], status.get("name") or "?", (terminated.get("message") or detail).strip()
    return None


def _unschedulable(name: str, scheduled: dict[str, Any], events: list[dict[str, Any]], now: dt.datetime) -> ResourceState:
    """Pending and unplaced: failing, unless the cluster-autoscaler is adding a node for it."""
    scale_up = latest(events, "TriggeredScaleUp")
    gave_up = latest(events, "NotTriggerScaleUp")
    if (scale_up is not None and now - event_time(scale_up) <= SCALE_UP_WINDOW
            and (gave_up is None or event_time(gave_up) <= event_time(scale_up))):
        return state("Pod", name, False, f"Pending — waiting for a new node (TriggeredScaleUp: {scale_up.get('message') or ''})"
                     .replace(": )", ")"), events=events)
    event = latest(events, "FailedScheduling")
    message = (scheduled.get("message") or (event or {}).get("message") or "").strip()
    return state("Pod", name, False, f"Pending — FailedScheduling: {message}".rstrip(": "),
                 failing="FailedScheduling", events=events, message=message)


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def is_ready(pod: dict[str, Any]) -> bool:
    ready = _condition(pod.get("status") or {}, "Ready")
    return (pod.get("status") or {}).get("phase") == "Succeeded" or (ready is not None and ready.get("status") == "True")


KIND = Kind("Pod", "/api/v1", "pods", assess, Read.EVENTS, rank=1, verbs=("get", "list"), why="the rollout watch",
            more_access=(Access("pods/log", "", ("get", "list"), "a failed pod's last log lines"),),
            remedies=REMEDIES, image_faults=IMAGE_FAULTS_WAITING | FAILING_TERMINATED)
