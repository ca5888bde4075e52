"""The reads a look needs beyond one GET per resource: Events, a workload's new pods, a log tail.

Kept apart from the rules (pure functions of the dicts these return) and from the watch's
bookkeeping; each is a single list call with selectors, so a look stays a handful of requests.
"""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness import deployment
from manual_deploy.readiness.api import Api, ReadError

LOG_LINES = 20
# kind -> (API prefix, plural) for the kinds with a rule; every other kind is ready once helm created it.
PATHS = {
    "Deployment": ("/apis/apps/v1", "deployments"), "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"), "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Job": ("/apis/batch/v1", "jobs"), "Pod": ("/api/v1", "pods"), "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"), "Event": ("/api/v1", "events"),
}


def path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = PATHS[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def events(api: Api, kind: str, name: str, namespace: str) -> list[dict[str, Any]]:
    return api.items(path("Event", namespace), fields=f"involvedObject.name={name},involvedObject.kind={kind}")


def deployment_pods(api: Api, obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The pods of the Deployment's current ReplicaSet (see deployment.current_replica_set)."""
    selector = deployment.selector_text(obj)
    current = deployment.current_replica_set(obj, api.items(path("ReplicaSet", namespace), labels=selector))
    if current is None:
        return []
    pods = api.items(path("Pod", namespace), labels=deployment.pod_selector(obj, current))
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def owned_pods(api: Api, obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """Live pods matching the workload's selector that it owns (StatefulSet, DaemonSet, Job)."""
    uid = obj["metadata"].get("uid")
    pods = api.items(path("Pod", namespace), labels=deployment.selector_text(obj) or None)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and any(ref.get("uid") == uid for ref in p["metadata"].get("ownerReferences") or [])]


def log_tail(api: Api, namespace: str, pod: str, container: str) -> list[str]:
    """The container's last lines; a crash-looping container's story is in its previous run."""
    for previous in ("false", "true"):
        try:
            text = api.text(path("Pod", namespace, pod) + "/log", container=container, tailLines=str(LOG_LINES),
                            previous=previous)
        except ReadError:
            continue
        if text.strip():
            return text.rstrip("\n").splitlines()[-LOG_LINES:]
    return []
