"""The reads a look needs beyond one GET per resource: Events, owned pods and Jobs, a log tail.

Kept apart from the rules (pure functions of the dicts these return) and from the watch's
bookkeeping; each is a single list call with selectors, so a look stays a handful of requests.
Paths come from the kind registry: a kind's module says where its objects live.
"""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness import kinds
from manual_deploy.readiness.api import Api, ReadError

LOG_LINES = 20


def path(kind: str, namespace: str, name: str | None = None) -> str:
    """The API path of a registered kind's objects (KeyError for a kind no module describes)."""
    found = kinds.get(kind)
    if found is None:
        raise KeyError(kind)
    return found.path(namespace, name)


def events(api: Api, kind: str, name: str, namespace: str) -> list[dict[str, Any]]:
    return api.items(path("Event", namespace), fields=f"involvedObject.name={name},involvedObject.kind={kind}")


def selector_text(workload: dict[str, Any]) -> str:
    """matchLabels as a label selector (matchExpressions are not used by the ingest charts)."""
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owned_by(owner: dict[str, Any], objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live ones among `objs` that `owner` owns (by uid in ownerReferences)."""
    uid = (owner.get("metadata") or {}).get("uid")
    return [o for o in objs if not o["metadata"].get("deletionTimestamp")
            and any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])]


def owned_pods(api: Api, obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """Live pods matching the workload's selector that it owns (StatefulSet, DaemonSet, Job)."""
    return owned_by(obj, api.items(path("Pod", namespace), labels=selector_text(obj) or None))


def owned_jobs(api: Api, obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The Jobs the object (a CronJob) started: they carry no selector of it, only its uid."""
    return owned_by(obj, api.items(path("Job", namespace)))


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
