"""The Deployment and ReplicaSet controllers, enough for helm's `--wait` and rollbacks to mean something.

A Deployment gets one ReplicaSet per pod template (`<deploy>-<hash>`, `pod-template-hash` label,
controller ownerReference), the current one is scaled to spec.replicas, and older ones are scaled to
zero only once the new pods are Ready -- so a rollout to a broken image leaves the old pods serving,
as RollingUpdate does. Status and conditions are those helm 3's ready checker and helm 4's kstatus
watcher read (observedGeneration, replica counts, Available, Progressing).

Everything runs on the emulator's loop: after each API write and on a short ticker.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import math
import time
from typing import Any

from manual_deploy_sandbox.kube import admission
from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.cronjobs import CRONJOBS, CronJobController
from manual_deploy_sandbox.kube.events import EventRecorder
from manual_deploy_sandbox.kube.ingresses import INGRESSES, IngressFailures, LoadBalancerController
from manual_deploy_sandbox.kube.kubelet import PODS, PROGRESS_DEADLINE_EXCEEDED, Failures, Kubelet
from manual_deploy_sandbox.kube.resources import by_path
from manual_deploy_sandbox.kube.scheduler import Scheduler
from manual_deploy_sandbox.kube.storage import CLAIMS, VOLUMES, VolumeController
from manual_deploy_sandbox.kube.volumes import VolumeFailures
from manual_deploy_sandbox.kube.workloads import JOBS, InstantWorkloads

log = logging.getLogger(__name__)

DEPLOYMENTS = by_path("apps/v1/deployments")
REPLICASETS = by_path("apps/v1/replicasets")
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
TICK = 0.1  # seconds between controller passes
MAX_PASSES = 4  # passes per sync until nothing changes (deployment -> RS -> pods -> statuses)


class Controller:
    """Reconciles Deployments, ReplicaSets and pods; `sync()` is one settle-until-quiet round."""

    def __init__(self, cluster: Cluster, failures: Failures, *, pod_start_delay: float, progress_deadline: float,
                 clock=time.monotonic, volume_failures: VolumeFailures | None = None,
                 ingress_failures: IngressFailures | None = None) -> None:
        self.cluster = cluster
        self.clock = clock
        self.progress_deadline = progress_deadline
        self.events = EventRecorder(cluster)
        self.volumes = VolumeController(cluster, self.events, clock=clock)
        self.scheduler = Scheduler(cluster, self.events, failures, clock=clock)
        self.kubelet = Kubelet(cluster, self.events, failures, start_delay=pod_start_delay, clock=clock,
                               volume_failures=volume_failures)
        self.others = InstantWorkloads(cluster, failures, delay=pod_start_delay, clock=clock, events=self.events)
        self.cronjobs = CronJobController(cluster, self.events)
        self.load_balancers = LoadBalancerController(
            cluster, self.events, ingress_failures if ingress_failures is not None else IngressFailures(),
            delay=pod_start_delay, clock=clock)
        self._rollouts: dict[tuple[str, str], float] = {}  # (deployment uid, RS name) -> when it started

    async def run(self, closing: asyncio.Event) -> None:
        """The ticker: pods progress and deadlines pass even when no client is writing."""
        while not closing.is_set():
            self.sync()
            try:
                await asyncio.wait_for(closing.wait(), TICK)
            except asyncio.TimeoutError:
                pass

    def sync(self) -> None:
        """Reconcile everything until a pass writes nothing; a failing pass is logged, never raised."""
        store = self.cluster.store
        for _ in range(MAX_PASSES):
            before = store.resource_version
            try:
                self._pass()
            except Exception:  # noqa: BLE001 - the ticker must survive any one bad object
                log.exception("kube emulator controller pass failed")
                break
            if store.resource_version == before:
                break
        live = {o["metadata"]["uid"] for r in (DEPLOYMENTS, REPLICASETS, PODS, CLAIMS, VOLUMES, JOBS, CRONJOBS,
                                                   INGRESSES)
                for o in store.list(r, copy=False)}
        self.events.forget(live)
        self._rollouts = {k: v for k, v in self._rollouts.items() if k[0] in live}

    def _pass(self) -> None:
        """Deployments -> ReplicaSets -> pods (claims bound, pods scheduled, kubelet) -> ReplicaSet status ->
        Deployment status (-> other workloads -> CronJobs) -> Ingresses.

        Reads are uncopied snapshots of the store (cheap); anything changed is copied first.
        """
        store = self.cluster.store
        owned_rs = _by_owner(store.list(REPLICASETS, copy=False))
        for dep in store.list(DEPLOYMENTS, copy=False):
            self._sync_deployment(dep, owned_rs.get(dep["metadata"]["uid"], []))
        owned_pods = _by_owner(store.list(PODS, copy=False))
        for rs in store.list(REPLICASETS, copy=False):
            self._sync_replicaset(rs, owned_pods.get(rs["metadata"]["uid"], []))
        self.volumes.sync()
        self.scheduler.sync(store.list(PODS, copy=False))
        self.kubelet.sync(store.list(PODS, copy=False))
        owned_pods = _by_owner(store.list(PODS, copy=False))
        for rs in store.list(REPLICASETS, copy=False):
            self._sync_replicaset_status(rs, owned_pods.get(rs["metadata"]["uid"], []))
        owned_rs = _by_owner(store.list(REPLICASETS, copy=False))
        for dep in store.list(DEPLOYMENTS, copy=False):
            self._sync_deployment_status(dep, owned_rs.get(dep["metadata"]["uid"], []), owned_pods)
        self.others.sync()
        self.cronjobs.sync()
        self.load_balancers.sync()

    # ------------------------------------------------------------------------------------- deployments

    def _sync_deployment(self, dep: dict[str, Any], owned: list[dict[str, Any]]) -> None:
        """Find or create the ReplicaSet of the current template; scale old ones down once it is Ready."""
        meta, spec = dep["metadata"], dep.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        owned = list(owned)
        new_rs = _current_replicaset(dep, owned)
        revision = max((_revision(rs) for rs in owned), default=0)
        desired = spec.get("replicas", 1)
        if new_rs is None:
            new_rs = self._create_replicaset(dep, revision + 1)
            owned.append(new_rs)
        elif _revision(new_rs) < revision:  # a rollback to an older template: it becomes the newest revision
            new_rs = copy.deepcopy(new_rs)
            new_rs["metadata"].setdefault("annotations", {})[REVISION] = str(revision + 1)
            new_rs = self._replace(REPLICASETS, new_rs)
            self._rollouts[meta["uid"], new_rs["metadata"]["name"]] = self.clock()
        if (new_rs.get("spec") or {}).get("replicas") != desired and not spec.get("paused"):
            new_rs = self._scale(dep, new_rs, desired)
        if (meta.get("annotations") or {}).get(REVISION) != str(_revision(new_rs)):
            dep = copy.deepcopy(dep)
            dep["metadata"].setdefault("annotations", {})[REVISION] = str(_revision(new_rs))
            dep = self._replace(DEPLOYMENTS, dep)
        olds = [rs for rs in owned if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        if (new_rs.get("status") or {}).get("readyReplicas", 0) >= desired:
            for old in olds:
                if (old.get("spec") or {}).get("replicas"):
                    self._scale(dep, old, 0)
        self._prune_history(spec.get("revisionHistoryLimit", 10), olds)

    def _create_replicaset(self, dep: dict[str, Any], revision: int) -> dict[str, Any]:
        meta, spec = dep["metadata"], dep["spec"]
        template_hash = _template_hash(spec.get("template") or {})
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
        name = f"{meta['name']}-{template_hash}"
        replicas = str(spec.get("replicas", 1))
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": dict(template["metadata"]["labels"]),
                         "annotations": {REVISION: str(revision), "deployment.kubernetes.io/desired-replicas": replicas,
                                         "deployment.kubernetes.io/max-replicas": replicas},
                         "ownerReferences": [_owner_reference(dep)]},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": selector,
                     "template": template},
        }
        existing = self.cluster.find(REPLICASETS, meta["namespace"], name)
        if existing is not None:  # left over from an orphaning delete: adopt it
            existing["metadata"]["ownerReferences"] = [_owner_reference(dep)]
            existing["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            created = self._replace(REPLICASETS, existing)
        else:
            created = self.cluster.create(REPLICASETS, rs, meta["namespace"])
        self._rollouts[meta["uid"], name] = self.clock()
        return created

    def _scale(self, dep: dict[str, Any], rs: dict[str, Any], replicas: int) -> dict[str, Any]:
        before = (rs.get("spec") or {}).get("replicas", 0)
        rs = copy.deepcopy(rs)
        rs.setdefault("spec", {})["replicas"] = replicas
        rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(
            (dep.get("spec") or {}).get("replicas", 1))
        updated = self._replace(REPLICASETS, rs)
        direction = "up" if replicas > before else "down"
        self.events.record(dep, "ScalingReplicaSet", f"Scaled {direction} replica set {rs['metadata']['name']} "
                           f"from {before} to {replicas}", component="deployment-controller", repeat=True)
        return updated

    def _prune_history(self, limit: int, olds: list[dict[str, Any]]) -> None:
        """Delete scaled-down old ReplicaSets beyond revisionHistoryLimit, oldest first."""
        idle = sorted((rs for rs in olds if not (rs.get("spec") or {}).get("replicas")
                       and not (rs.get("status") or {}).get("replicas")), key=_revision)
        for rs in idle[:max(len(idle) - limit, 0)]:
            self.cluster.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _sync_deployment_status(self, dep: dict[str, Any], owned: list[dict[str, Any]],
                                owned_pods: dict[str, list[dict[str, Any]]]) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        new_rs = _current_replicaset(dep, owned)
        if new_rs is None or meta.get("deletionTimestamp"):
            return
        desired = spec.get("replicas", 1)
        counts = [(rs.get("status") or {}) for rs in owned]
        total = sum(c.get("replicas", 0) for c in counts)
        ready = sum(c.get("readyReplicas", 0) for c in counts)
        available = sum(c.get("availableReplicas", 0) for c in counts)
        updated = (new_rs.get("status") or {}).get("replicas", 0)
        old = dep.get("status") or {}
        new_pods = owned_pods.get(new_rs["metadata"]["uid"], [])
        conditions = [
            self._available_condition(old, available >= desired - _max_unavailable(spec, desired)),
            self._progressing_condition(dep, old, new_rs, new_pods, updated == desired == total == available),
        ]
        status = {"observedGeneration": meta.get("generation", 1), "replicas": total, "updatedReplicas": updated,
                  "readyReplicas": ready, "availableReplicas": available,
                  "unavailableReplicas": max(desired - available, 0), "conditions": conditions}
        status = {k: v for k, v in status.items() if v != 0 or k in ("observedGeneration", "replicas")}
        if status != old:
            if (_reason(conditions[1]) == PROGRESS_DEADLINE_EXCEEDED
                    and _reason(_find(old, "Progressing")) != PROGRESS_DEADLINE_EXCEEDED):
                self.events.record(dep, PROGRESS_DEADLINE_EXCEEDED, conditions[1]["message"], warning=True,
                                   component="deployment-controller")
            self._replace(DEPLOYMENTS, {**dep, "status": status}, subresource="status")

    def _available_condition(self, old: dict[str, Any], ok: bool) -> dict[str, Any]:
        if ok:
            return _keep_times(_find(old, "Available"), "Available", "True", "MinimumReplicasAvailable",
                               "Deployment has minimum availability.")
        return _keep_times(_find(old, "Available"), "Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.")

    def _progressing_condition(self, dep: dict[str, Any], old: dict[str, Any], new_rs: dict[str, Any],
                               new_pods: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        rs_name = new_rs["metadata"]["name"]
        previous = _find(old, "Progressing")
        if complete:
            return _keep_times(previous, "Progressing", "True", "NewReplicaSetAvailable",
                               f'ReplicaSet "{rs_name}" has successfully progressed.')
        if _reason(previous) == PROGRESS_DEADLINE_EXCEEDED and rs_name in previous.get("message", ""):
            return previous
        started = self._rollouts.setdefault((dep["metadata"]["uid"], rs_name), self.clock())
        if self.clock() - started >= self._deadline(dep, new_pods):
            return _keep_times(previous, "Progressing", "False", PROGRESS_DEADLINE_EXCEEDED,
                               f'ReplicaSet "{rs_name}" has timed out progressing.')
        return _keep_times(previous, "Progressing", "True", "ReplicaSetUpdated",
                           f'ReplicaSet "{rs_name}" is progressing.')

    def _deadline(self, dep: dict[str, Any], new_pods: list[dict[str, Any]]) -> float:
        """spec.progressDeadlineSeconds; the emulator's short deadline when pods are injected unschedulable."""
        deadline = float((dep.get("spec") or {}).get("progressDeadlineSeconds", 600))
        if any(self.scheduler.injected_unschedulable(p) for p in new_pods):
            deadline = min(deadline, self.progress_deadline)
        return deadline

    # ------------------------------------------------------------------------------------- replicasets

    def _sync_replicaset(self, rs: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Create or delete pods until the ReplicaSet has spec.replicas of them."""
        if rs["metadata"].get("deletionTimestamp"):
            return
        desired = (rs.get("spec") or {}).get("replicas", 1)
        for _ in range(desired - len(pods)):
            self._create_pod(rs)
        surplus = sorted(pods, key=lambda p: (_pod_ready(p), p["metadata"]["creationTimestamp"]))
        for pod in surplus[:max(len(pods) - desired, 0)]:
            self.cluster.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _create_pod(self, rs: dict[str, Any]) -> dict[str, Any]:
        meta = rs["metadata"]
        template = (rs.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        spec = copy.deepcopy(template.get("spec") or {})
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{meta['name']}-{admission.random_suffix()}", "generateName": f"{meta['name']}-",
                            "namespace": meta["namespace"], "labels": dict(template_meta.get("labels") or {}),
                            "ownerReferences": [_owner_reference(rs)]},
               "spec": spec}
        if template_meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(template_meta["annotations"])
        return self.cluster.create(PODS, pod, meta["namespace"])

    def _sync_replicaset_status(self, rs: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        ready = sum(1 for p in pods if _pod_ready(p))
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}
        status = {k: v for k, v in status.items() if v != 0 or k == "replicas"}
        if status != (rs.get("status") or {}):
            self._replace(REPLICASETS, {**rs, "status": status}, subresource="status")

    # ---------------------------------------------------------------------------------------- helpers

    def _replace(self, res, obj: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        meta = obj["metadata"]
        return self.cluster.replace(res, meta.get("namespace"), meta["name"], obj, subresource=subresource)


def _by_owner(objs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Objects grouped by the uid of their controller (ownerReference with controller: true)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for obj in objs:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if ref.get("controller"):
                grouped.setdefault(ref.get("uid"), []).append(obj)
    return grouped


def _current_replicaset(dep: dict[str, Any], owned: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The owned ReplicaSet whose template equals the Deployment's (ignoring pod-template-hash)."""
    template = (dep.get("spec") or {}).get("template") or {}
    wanted = _template_hash(template)
    for rs in owned:
        if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == wanted and \
                _without_hash((rs.get("spec") or {}).get("template") or {}) == template:
            return rs
    return None


def _template_hash(template: dict[str, Any]) -> str:
    """A stable pod-template-hash in the apiserver's safe alphabet (no vowels, no look-alikes)."""
    value = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    chars = []
    for _ in range(10):
        value, index = divmod(value, len(admission.NAME_SUFFIX_ALPHABET))
        chars.append(admission.NAME_SUFFIX_ALPHABET[index])
    return "".join(chars)


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return template


def _owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _revision(rs: dict[str, Any]) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _max_unavailable(spec: dict[str, Any], desired: int) -> int:
    """RollingUpdate's maxUnavailable as a replica count (percentages round down, like the controller)."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or desired == 0:
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(int(value[:-1]) * desired / 100)
    return int(value)


def _find(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _reason(condition: dict[str, Any]) -> str | None:
    return condition.get("reason")


def _keep_times(previous: dict[str, Any], kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    """A condition that keeps its timestamps while nothing about it changes, so status stays stable."""
    if (previous.get("status"), previous.get("reason"), previous.get("message")) == (status, reason, message):
        return previous
    stamp = admission.now()
    transition = previous.get("lastTransitionTime") if previous.get("status") == status else stamp
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": transition or stamp,
            "reason": reason, "message": message}
