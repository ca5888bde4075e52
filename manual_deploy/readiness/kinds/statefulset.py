"""StatefulSet rule, after kubectl's StatefulSetStatusViewer (RollingUpdate strategy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from manual_deploy.readiness import reads
from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, name_of, state, with_worst_pod

if TYPE_CHECKING:
    from manual_deploy.readiness.api import Api


def assess(sts: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events = name_of(sts), list(related.events)
    meta, spec, status = sts.get("metadata") or {}, sts.get("spec") or {}, sts.get("status") or {}
    desired = spec["replicas"] if spec.get("replicas") is not None else 1
    ready, updated = status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0
    if (meta.get("generation") or 0) > (status.get("observedGeneration") or 0):
        summary = "spec update not yet observed by the statefulset controller"
    elif ready < desired:
        summary = f"{ready} of {desired} pods ready"
    elif (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return state("StatefulSet", name, True, f"{ready}/{desired} ready (updates on delete)")
    elif updated < desired:
        summary = f"{updated} of {desired} pods updated to revision {status.get('updateRevision') or '?'}"
    elif status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        summary = f"rolling update to {status['updateRevision']} not finished (current {status.get('currentRevision') or '?'})"
    else:
        return state("StatefulSet", name, True, f"rolled out: {ready}/{desired} ready")
    summary = with_worst_pod(summary, related.pods)
    return state("StatefulSet", name, False, summary, events=events)


def is_new_pod(sts: dict[str, Any], pod: dict[str, Any]) -> bool:
    """A pod of the revision being rolled out (all pods while the controller has not said which)."""
    revision = (sts.get("status") or {}).get("updateRevision")
    return not revision or ((pod.get("metadata") or {}).get("labels") or {}).get("controller-revision-hash") == revision


def new_pods(api: Api, sts: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """Its pods of the revision being rolled out."""
    return [p for p in reads.owned_pods(api, sts, namespace) if is_new_pod(sts, p)]


KIND = Kind("StatefulSet", "/apis/apps/v1", "statefulsets", assess, Read.EVENTS | Read.PODS, new_pods, rank=2,
            verbs=("get",), why="the rollout watch")
