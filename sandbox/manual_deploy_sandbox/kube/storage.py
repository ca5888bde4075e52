"""The persistentvolume-controller with a dynamic provisioner: claims bind, or their Events say why not.

helm's `--wait` waits for every PersistentVolumeClaim to be Bound, and a claim that never binds is a
classic failed deploy in EKS (a typo'd or missing StorageClass, WaitForFirstConsumer with no pod).
So claims go through the same states and Events as there: provisioned at once for an Immediate
class, on the scheduler's `selected-node` annotation for WaitForFirstConsumer, and retried with a
rising Event count when the class is missing. A deleted claim's volume is deleted or Released as its
reclaim policy says; a deleted claim in use by a pod waits (pvc-protection finalizer).
"""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any

from manual_deploy_sandbox.kube import admission
from manual_deploy_sandbox.kube.resources import by_path

if TYPE_CHECKING:
    from manual_deploy_sandbox.kube.cluster import Cluster
    from manual_deploy_sandbox.kube.events import EventRecorder

CLAIMS = by_path("v1/persistentvolumeclaims")
VOLUMES = by_path("v1/persistentvolumes")
STORAGE_CLASSES = by_path("storage.k8s.io/v1/storageclasses")
PODS = by_path("v1/pods")
COMPONENT = "persistentvolume-controller"
RETRY = 2.0  # seconds between retries of a claim that cannot bind (the real resync is 15 s)
ZONE = "us-east-1a"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
EKS_GP2 = {"metadata": {"name": "gp2", "annotations": {admission.DEFAULT_CLASS: "true"}},
           "provisioner": "kubernetes.io/aws-ebs", "parameters": {"type": "gp2", "fsType": "ext4"},
           "reclaimPolicy": "Delete", "volumeBindingMode": WAIT_FOR_FIRST_CONSUMER, "allowVolumeExpansion": False}


def storage_class(spec: str | dict[str, Any]) -> dict[str, Any]:
    """A StorageClass from a name or a partial dict ({"name": ..., "reclaimPolicy": ...}).

    "gp2" alone is EKS's default class; any other class starts as a non-default copy of gp2.
    """
    spec = copy.deepcopy({"name": spec} if isinstance(spec, str) else spec)
    metadata = spec.pop("metadata", None) or {}
    name = spec.pop("name", None) or metadata.get("name")
    obj = copy.deepcopy(EKS_GP2)
    if name != "gp2" or spec or metadata:
        obj["metadata"] = {}
    obj.update(spec)
    obj["metadata"] = {**obj["metadata"], **metadata, "name": name}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", **obj}


def claims_of(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(volume name, claim name) of each persistentVolumeClaim volume of a pod."""
    return [(v.get("name", ""), v["persistentVolumeClaim"].get("claimName", ""))
            for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")]


def volume_id(pv_name: str) -> str:
    """The EBS volume id behind a provisioned PV (stable, shaped like AWS's)."""
    return "vol-0" + hashlib.sha256(pv_name.encode()).hexdigest()[:16]


def is_delayed(claim: dict[str, Any], classes: dict[str, dict[str, Any]]) -> bool:
    """Whether binding waits for a consumer (as the scheduler's VolumeBinding plugin decides it)."""
    sc = classes.get((claim.get("spec") or {}).get("storageClassName") or "")
    return sc is not None and sc.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER


class VolumeController:
    """Binds claims to freshly provisioned volumes and reclaims volumes whose claim is gone."""

    def __init__(self, cluster: Cluster, events: EventRecorder, *, clock) -> None:
        self.cluster, self.events, self.clock = cluster, events, clock
        self._first_seen: dict[str, float] = {}  # claim uid -> when the controller first saw it

    def sync(self) -> None:
        store = self.cluster.store
        claims = store.list(CLAIMS, copy=False)
        classes = {c["metadata"]["name"]: c for c in store.list(STORAGE_CLASSES, copy=False)}
        pods = store.list(PODS, copy=False)
        for claim in claims:
            if claim["metadata"].get("deletionTimestamp"):
                self._release(claim, pods)
            elif (claim.get("status") or {}).get("phase") != "Bound":
                self._sync_claim(claim, classes)
        live = {c["metadata"]["uid"] for c in store.list(CLAIMS, copy=False)}
        for pv in store.list(VOLUMES, copy=False):
            self._reclaim(pv, live)
        self._first_seen = {uid: t for uid, t in self._first_seen.items() if uid in live}

    def _sync_claim(self, claim: dict[str, Any], classes: dict[str, dict[str, Any]]) -> None:
        meta, spec = claim["metadata"], claim.get("spec") or {}
        retry = int((self.clock() - self._first_seen.setdefault(meta["uid"], self.clock())) / RETRY)
        name = spec.get("storageClassName")
        if not name:
            self.events.every(claim, "FailedBinding", "no persistent volumes available for this claim and no "
                              "storage class is set", retry, component=COMPONENT)
        elif name not in classes:
            self.events.every(claim, "ProvisioningFailed", f'storageclass.storage.k8s.io "{name}" not found', retry,
                              warning=True, component=COMPONENT)
        elif is_delayed(claim, classes) and not (meta.get("annotations") or {}).get(SELECTED_NODE):
            self.events.every(claim, WAIT_FOR_FIRST_CONSUMER, "waiting for first consumer to be created before "
                              "binding", retry, component=COMPONENT)
        else:
            self._provision(claim, classes[name])

    def _provision(self, claim: dict[str, Any], sc: dict[str, Any]) -> None:
        """Create `pvc-<uid>` for the claim and bind both ways, as provisioner + PV controller do."""
        meta, spec = claim["metadata"], claim.get("spec") or {}
        name, provisioner = f"pvc-{meta['uid']}", sc.get("provisioner", "")
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        modes = list(spec.get("accessModes") or ["ReadWriteOnce"])
        if self.cluster.find(VOLUMES, None, name) is None:
            pv = {"apiVersion": "v1", "kind": "PersistentVolume",
                  "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": provisioner}},
                  "spec": {"capacity": {"storage": size}, "accessModes": modes,
                           "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": meta["name"],
                                        "namespace": meta["namespace"], "uid": meta["uid"],
                                        "resourceVersion": meta.get("resourceVersion")},
                           "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                           "storageClassName": sc["metadata"]["name"],
                           "volumeMode": spec.get("volumeMode", "Filesystem"),
                           "awsElasticBlockStore": {"volumeID": f"aws://{ZONE}/{volume_id(name)}", "fsType": "ext4"},
                           "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                               {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [ZONE]}]}]}}}}
            created = self.cluster.create(VOLUMES, pv)
            self.cluster.replace(VOLUMES, None, name, {**created, "status": {"phase": "Bound"}}, subresource="status")
            self.events.record(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name} using "
                               f"{provisioner}", component=COMPONENT)
        bound = copy.deepcopy(claim)
        bound["spec"]["volumeName"] = name
        bound["metadata"].setdefault("annotations", {}).update({
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": provisioner,
            "volume.kubernetes.io/storage-provisioner": provisioner})
        bound = self.cluster.replace(CLAIMS, meta["namespace"], meta["name"], bound)
        bound["status"] = {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}
        self.cluster.replace(CLAIMS, meta["namespace"], meta["name"], bound, subresource="status")

    def _release(self, claim: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Drop the pvc-protection finalizer once no live pod of the namespace mounts the claim."""
        meta = claim["metadata"]
        if any(p["metadata"]["namespace"] == meta["namespace"] and meta["name"] in {c for _, c in claims_of(p)}
               and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods):
            return
        if admission.PVC_PROTECTION in (meta.get("finalizers") or []):
            released = copy.deepcopy(claim)
            released["metadata"]["finalizers"] = [f for f in meta["finalizers"] if f != admission.PVC_PROTECTION]
            self.cluster.replace(CLAIMS, meta["namespace"], meta["name"], released)

    def _reclaim(self, pv: dict[str, Any], live_claims: set[str]) -> None:
        """A bound volume whose claim is gone: deleted (reclaimPolicy Delete) or Released (Retain)."""
        spec, name = pv.get("spec") or {}, pv["metadata"]["name"]
        ref = spec.get("claimRef") or {}
        if not ref.get("uid") or ref["uid"] in live_claims or (pv.get("status") or {}).get("phase") != "Bound":
            return
        if spec.get("persistentVolumeReclaimPolicy") == "Delete":
            self.cluster.delete(VOLUMES, None, name)
        else:
            self.cluster.replace(VOLUMES, None, name, {**pv, "status": {"phase": "Released"}}, subresource="status")
