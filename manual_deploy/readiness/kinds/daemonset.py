"""DaemonSet rule, after kubectl's DaemonSetStatusViewer."""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness import reads
from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, name_of, state, with_worst_pod


def assess(ds: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events = name_of(ds), list(related.events)
    meta, status = ds.get("metadata") or {}, ds.get("status") or {}
    desired = status.get("desiredNumberScheduled") or 0
    updated, ready = status.get("updatedNumberScheduled") or 0, status.get("numberReady") or 0
    if (meta.get("generation") or 0) > (status.get("observedGeneration") or 0):
        summary = "spec update not yet observed by the daemonset controller"
    elif updated < desired:
        summary = f"{updated} of {desired} nodes run the updated pod"
    elif (status.get("numberAvailable") or ready) < desired or ready < desired:
        summary = f"{ready} of {desired} updated pods ready"
    else:
        return state("DaemonSet", name, True, f"rolled out: {ready}/{desired} ready")
    summary = with_worst_pod(summary, related.pods)
    return state("DaemonSet", name, False, summary, events=events)


KIND = Kind("DaemonSet", "/apis/apps/v1", "daemonsets", assess, Read.EVENTS | Read.PODS, reads.owned_pods, rank=2,
            verbs=("get",), why="the rollout watch")
