"""The default-scheduler for the one node: binds pods that fit, or marks them Unschedulable and says why.

A pod the scheduler cannot place is the most common "helm --wait timed out" in EKS, so the reasons
are the real ones with the real texts: a claim that does not exist or is unbound (the VolumeBinding
plugin), requests beyond the node's allocatable cpu/memory minus what bound pods request
(NodeResourcesFit), and the injected ProgressDeadlineExceeded mode (shown as Insufficient cpu).
Unschedulable pods are retried, so FailedScheduling's count rises; once the cause is gone they bind.
Pods with WaitForFirstConsumer claims get the `selected-node` annotation on the claim and bind once
the provisioner has bound it (the real PreBind step).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from manual_deploy_sandbox.kube.events import NODE_NAME, EventRecorder
from manual_deploy_sandbox.kube.resources import by_path
from manual_deploy_sandbox.kube.storage import CLAIMS, SELECTED_NODE, STORAGE_CLASSES, claims_of, is_delayed

if TYPE_CHECKING:
    from manual_deploy_sandbox.kube.cluster import Cluster
    from manual_deploy_sandbox.kube.kubelet import Failures

PODS = by_path("v1/pods")
NODES = by_path("v1/nodes")
COMPONENT = "default-scheduler"
RETRY = 2.0  # seconds between scheduling attempts of an unschedulable pod (real: 1 s back-off up to 10 s)
NOT_HELPFUL = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
NO_VICTIMS = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIXES = {None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(value: Any) -> float:
    """A resource.Quantity ("500m", "1.4Gi", "2", 3) as a number (cores / bytes); unparsable is 0."""
    match = _QUANTITY.match(str(value).strip())
    return float(match[1]) * _SUFFIXES[match[2]] if match else 0.0


def pod_requests(spec: dict[str, Any]) -> dict[str, float]:
    """What the scheduler charges a pod: the sum of its containers' requests (limits if only those
    are set), or the largest init container's if that is more."""
    def of(container: dict[str, Any], kind: str) -> float:
        res = container.get("resources") or {}
        value = (res.get("requests") or {}).get(kind, (res.get("limits") or {}).get(kind))
        return quantity(value) if value is not None else 0.0
    return {kind: max(sum(of(c, kind) for c in spec.get("containers") or []),
                      max((of(c, kind) for c in spec.get("initContainers") or []), default=0.0))
            for kind in ("cpu", "memory")}


def qos_class(spec: dict[str, Any]) -> str:
    """status.qosClass as the apiserver computes it from requests and limits."""
    containers = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any((r.get("requests") or {}).keys() & {"cpu", "memory"} or (r.get("limits") or {}).keys()
               & {"cpu", "memory"} for r in containers):
        return "BestEffort"
    guaranteed = all(all(kind in (r.get("limits") or {}) and quantity((r.get("requests") or {}).get(
        kind, r["limits"][kind])) == quantity(r["limits"][kind]) for kind in ("cpu", "memory")) for r in containers)
    return "Guaranteed" if guaranteed else "Burstable"


class Scheduler:
    """Places pods without spec.nodeName on the node, in creation order."""

    def __init__(self, cluster: Cluster, events: EventRecorder, failures: Failures, *, clock) -> None:
        self.cluster, self.events, self.failures, self.clock = cluster, events, failures, clock
        self._pending: dict[str, tuple[float, str]] = {}  # pod uid -> (clock, wall stamp) when first unschedulable
        self._injected: dict[str, bool] = {}  # pod uid -> an injected ProgressDeadlineExceeded matched it

    def injected_unschedulable(self, pod: dict[str, Any]) -> bool:
        """Whether the pod is unschedulable by injection (the controller then shortens the deadline)."""
        return self._injected.get(pod["metadata"]["uid"], False)

    def sync(self, pods: list[dict[str, Any]]) -> None:
        from manual_deploy_sandbox.kube.kubelet import PROGRESS_DEADLINE_EXCEEDED  # kubelet imports us
        store = self.cluster.store
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        used = {"cpu": 0.0, "memory": 0.0}
        for pod in live:
            if (pod.get("spec") or {}).get("nodeName") and (pod.get("status") or {}).get("phase") not in (
                    "Succeeded", "Failed"):
                for kind, value in pod_requests(pod["spec"]).items():
                    used[kind] += value
        node = store.get(NODES, None, NODE_NAME, copy=False) or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        classes = {c["metadata"]["name"]: c for c in store.list(STORAGE_CLASSES, copy=False)}
        for pod in sorted((p for p in live if not (p.get("spec") or {}).get("nodeName")),
                          key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"])):
            uid = pod["metadata"]["uid"]
            injected = self._injected.setdefault(uid, any(
                (f := self.failures.match(c.get("image", ""))) and f.mode == PROGRESS_DEADLINE_EXCEEDED
                for c in pod["spec"].get("containers") or []))
            requests = pod_requests(pod["spec"])
            problem = self._volume_problem(pod, classes) or self._fit_problem(requests, used, allocatable, injected)
            if problem:
                self._unschedulable(pod, problem)
            elif self._volumes_ready(pod, classes):
                self._bind(pod)
                for kind, value in requests.items():
                    used[kind] += value
        uids = {p["metadata"]["uid"] for p in pods}
        self._pending = {u: v for u, v in self._pending.items() if u in uids}
        self._injected = {u: v for u, v in self._injected.items() if u in uids}

    def _volume_problem(self, pod: dict[str, Any], classes: dict[str, dict[str, Any]]) -> str | None:
        namespace = pod["metadata"]["namespace"]
        unbound = False
        for _, name in claims_of(pod):
            claim = self.cluster.store.get(CLAIMS, namespace, name, copy=False)
            if claim is None:
                return f'0/1 nodes are available: persistentvolumeclaim "{name}" not found. {NOT_HELPFUL}'
            if claim["metadata"].get("deletionTimestamp"):
                return f'0/1 nodes are available: persistentvolumeclaim "{name}" is being deleted. {NOT_HELPFUL}'
            if (claim.get("status") or {}).get("phase") != "Bound" and not is_delayed(claim, classes):
                unbound = True
        return f"0/1 nodes are available: {UNBOUND_IMMEDIATE}. {NOT_HELPFUL}" if unbound else None

    @staticmethod
    def _fit_problem(requests: dict[str, float], used: dict[str, float], allocatable: dict[str, Any],
                     injected: bool) -> str | None:
        short = sorted(kind for kind in ("cpu", "memory") if requests[kind] and kind in allocatable
                       and used[kind] + requests[kind] > quantity(allocatable[kind]) + 1e-9)
        if injected and "cpu" not in short:
            short = sorted([*short, "cpu"])
        if not short:
            return None
        return f"0/1 nodes are available: {', '.join(f'1 Insufficient {kind}' for kind in short)}. {NO_VICTIMS}"

    def _volumes_ready(self, pod: dict[str, Any], classes: dict[str, dict[str, Any]]) -> bool:
        """Whether every claim is Bound; WaitForFirstConsumer claims are first given this node."""
        ready = True
        for _, name in claims_of(pod):
            claim = self.cluster.store.get(CLAIMS, pod["metadata"]["namespace"], name, copy=False)
            if claim is None or (claim.get("status") or {}).get("phase") == "Bound":
                continue
            ready = False
            if is_delayed(claim, classes) and not (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE):
                chosen = copy.deepcopy(claim)
                chosen["metadata"].setdefault("annotations", {})[SELECTED_NODE] = NODE_NAME
                self.cluster.replace(CLAIMS, claim["metadata"]["namespace"], name, chosen)
        return ready

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]
        since, stamp = self._pending.setdefault(
            meta["uid"], (self.clock(), dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
        old = pod.get("status") or {}
        previous = next((c for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        status = {"phase": "Pending", "qosClass": qos_class(pod["spec"]), "conditions": [
            {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
             "lastTransitionTime": previous.get("lastTransitionTime") or stamp, "reason": "Unschedulable",
             "message": message}]}
        if status != old:
            self.cluster.replace(PODS, meta["namespace"], meta["name"], {**pod, "status": status},
                                 subresource="status")
        self.events.every(pod, "FailedScheduling", message, int((self.clock() - since) / RETRY), warning=True,
                          component=COMPONENT)

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = NODE_NAME
        self.cluster.replace(PODS, meta["namespace"], meta["name"], bound)
        self.events.record(pod, "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} to "
                           f"{NODE_NAME}", component=COMPONENT)
