"""core/v1 Events, written the way kubelet and the controllers write them.

Diagnostics read a failing pod's story from its Events (`involvedObject.name=<pod>`): reason,
message, type, count and timestamps. Repeats of the same reason+message bump `count` and
`lastTimestamp` on one Event instead of adding new ones, as the real event recorder does.
"""

from __future__ import annotations

import secrets
from typing import Any

from manual_deploy_sandbox.kube import admission
from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.resources import by_path

EVENTS = by_path("v1/events")
NODE_NAME = "sandbox-node"


class EventRecorder:
    """Creates Events about objects; the same (object, reason, message) is counted, not duplicated."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._names: dict[tuple[str, str, str], str] = {}
        self._periods: dict[tuple[str, str, str], int] = {}

    def every(self, obj: dict[str, Any], reason: str, message: str, period: int, **kwargs: Any) -> None:
        """A retried failure: one count per new `period` number (e.g. elapsed // retry interval).

        Real controllers and the kubelet retry on a timer and re-emit the same Event each time, so the
        count rises and lastTimestamp moves while nothing is fixed; callers pass the retry number.
        """
        key = (obj["metadata"].get("uid", ""), reason, message)
        if period > self._periods.get(key, -1):
            self._periods[key] = period
            self.record(obj, reason, message, repeat=True, **kwargs)

    def record(self, obj: dict[str, Any], reason: str, message: str, *, warning: bool = False,
               component: str = "kubelet", repeat: bool = False, field_path: str | None = None,
               host: bool | None = None) -> None:
        """Emit once; with `repeat`, a later identical call bumps the count (kubelet's BackOff).

        `field_path` is what the kubelet sets for container events (`spec.containers{app}`); `host`
        (default: only for the kubelet) adds source.host, as node-local components report it.
        """
        meta = obj["metadata"]
        on_host = component in ("kubelet",) if host is None else host
        key = (meta.get("uid", ""), reason, message)
        namespace = meta.get("namespace") or "default"
        existing_name = self._names.get(key)
        existing = self.cluster.find(EVENTS, namespace, existing_name) if existing_name else None
        if existing is not None:
            if repeat:
                existing["count"] = existing.get("count", 1) + 1
                existing["lastTimestamp"] = admission.now()
                self.cluster.replace(EVENTS, namespace, existing_name, existing)
            return
        stamp = admission.now()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                               "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion"),
                               **({"fieldPath": field_path} if field_path else {})},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": component, **({"host": NODE_NAME} if on_host else {})},
            "reportingComponent": component, "reportingInstance": NODE_NAME if on_host else "",
        }
        created = self.cluster.create(EVENTS, event, namespace)
        self._names[key] = created["metadata"]["name"]

    def forget(self, live_uids: set[str]) -> None:
        """Drop bookkeeping for objects that are gone (their Events stay, as in a real cluster)."""
        self._names = {k: v for k, v in self._names.items() if k[0] in live_uids}
        self._periods = {k: v for k, v in self._periods.items() if k[0] in live_uids}
