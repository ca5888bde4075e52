"""Deployment rule: the rollout verdict (kubectl rollout status), plus what its new pods say.

The counts alone cannot tell a slow pod from a broken one; the new pods' own states (pod rules)
can, so the Deployment's summary carries the first pod problem along.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from manual_deploy.live_deployment import REVISION, LiveDeployment
from manual_deploy.readiness import reads
from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, name_of, state, with_worst_pod

if TYPE_CHECKING:
    from manual_deploy.readiness.api import Api


def assess(deployment: dict[str, Any], related: Related = Related()) -> ResourceState:
    live = LiveDeployment.from_dict(deployment)
    verdict = live.verdict()
    if verdict.state == "done":
        return state("Deployment", live.name, True, verdict.message)
    failing = "ProgressDeadlineExceeded" if verdict.state == "failed" else None
    summary = with_worst_pod(verdict.message, related.pods)
    return state("Deployment", live.name, False, summary, failing=failing, events=list(related.events),
                 message=live.deadline_exceeded or "")


def new_pods(api: Api, deployment: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The live pods of the Deployment's current ReplicaSet (see current_replica_set)."""
    selector = reads.selector_text(deployment)
    current = current_replica_set(deployment, api.items(reads.path("ReplicaSet", namespace), labels=selector))
    if current is None:
        return []
    pods = api.items(reads.path("Pod", namespace), labels=pod_selector(deployment, current))
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _revision(replica_set: dict[str, Any]) -> int:
    try:
        return int(((replica_set.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def current_replica_set(deployment: dict[str, Any], replica_sets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ReplicaSet the Deployment is rolling out to, among those it owns.

    By revision, as the Deployment controller numbers them, not by age: a rollback re-activates an
    old ReplicaSet (giving it the highest revision), and creation times only have one-second
    resolution. The Deployment's own revision annotation names it once the controller has seen the
    change; before that the highest revision is the best guess.
    """
    uid = (deployment.get("metadata") or {}).get("uid")
    owned = [rs for rs in replica_sets
             if any(ref.get("uid") == uid for ref in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    if not owned:
        return None
    wanted = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    named = [rs for rs in owned if wanted is not None and str(_revision(rs)) == wanted]
    if named:
        return named[0]
    return max(owned, key=lambda rs: (_revision(rs), (rs.get("metadata") or {}).get("creationTimestamp") or "", name_of(rs)))


def pod_selector(deployment: dict[str, Any], replica_set: dict[str, Any]) -> str:
    """The label selector of the ReplicaSet's pods: the Deployment's, narrowed by pod-template-hash."""
    selector = reads.selector_text(deployment)
    template_hash = ((replica_set.get("metadata") or {}).get("labels") or {}).get("pod-template-hash")
    return f"{selector},pod-template-hash={template_hash}" if template_hash else selector


KIND = Kind("Deployment", "/apis/apps/v1", "deployments", assess, Read.EVENTS | Read.PODS, new_pods, rank=2,
            verbs=("get", "list", "create", "patch", "delete"), why="the app (delete: --force-refresh)",
            remedies={"ProgressDeadlineExceeded": "the Deployment stopped progressing: the pods' own states above say why"})
