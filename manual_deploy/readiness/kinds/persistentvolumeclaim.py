"""PersistentVolumeClaim rule: Bound is ready; a Pending claim says why from its Events.

A claim that stays Pending makes helm's --wait hang until --timeout with nothing said; the Events
of the claim (written by the PV controller and the CSI provisioner) carry the reason.
"""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, because, name_of, state

# Reasons after which waiting will not bind the claim (a missing StorageClass, no matching volume).
FAILING = ("ProvisioningFailed", "FailedBinding")


def assess(claim: dict[str, Any], related: Related = Related()) -> ResourceState:
    """A claim no workload of the release mounts never binds under WaitForFirstConsumer (`related.release`)."""
    name, events = name_of(claim), list(related.events)
    mounted = related.release is None or name in claims_mounted(list(related.release))
    status = claim.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Bound":
        volume = (claim.get("spec") or {}).get("volumeName")
        return state("PersistentVolumeClaim", name, True, f"Bound to {volume}" if volume else "Bound")
    if phase == "Lost":
        return state("PersistentVolumeClaim", name, False, "Lost — its volume is gone", failing="ClaimLost", events=events,
                     message=f"volume {(claim.get('spec') or {}).get('volumeName') or '?'} is gone")
    newest = because(events, "ProvisioningFailed", "FailedBinding", "WaitForFirstConsumer", "ExternalProvisioning", "Provisioning")
    if newest is None:
        return state("PersistentVolumeClaim", name, False, f"{phase} — no events yet", events=events)
    reason, message, count = newest
    summary = f"{phase} — {_plain(message)} ({reason}, {count}×)"
    if reason in FAILING:
        return state("PersistentVolumeClaim", name, False, summary, failing=reason, events=events, message=message)
    if reason == "WaitForFirstConsumer" and not mounted:
        return state("PersistentVolumeClaim", name, False,
                     f"{phase} — waits for a pod to mount it, and no workload of the release does ({reason})",
                     failing="NoConsumer", events=events,
                     message="its storage class binds on first use, and no workload of the release mounts it")
    return state("PersistentVolumeClaim", name, False, summary, events=events)


def _plain(message: str) -> str:
    """`storageclass.storage.k8s.io "x" not found` reads better as `storageclass "x" not found`."""
    return message.replace("storageclass.storage.k8s.io ", "storageclass ")


def claims_mounted(resources: list[dict[str, Any]]) -> set[str]:
    """Claim names mounted by the pod templates of the release's workloads (and bare Pods)."""
    names = set()
    for obj in resources:
        spec = obj.get("spec") or {}
        kind = obj.get("kind")
        if kind == "Pod":
            pod_spec = spec
        elif kind == "CronJob":
            pod_spec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        else:
            pod_spec = (spec.get("template") or {}).get("spec") or {}
        for volume in pod_spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                names.add(claim)
    return names


KIND = Kind("PersistentVolumeClaim", "/api/v1", "persistentvolumeclaims", assess, Read.EVENTS,
            verbs=("get", "create", "patch"), why="the chart's claims", remedies={
                "ProvisioningFailed": "create the StorageClass the claim names in the cluster, or fix its storageClassName "
                                      "in ingest-kube-deployment (`kubectl get storageclass` lists what exists)",
                "FailedBinding": "the claim names no StorageClass and the cluster has no default: set storageClassName in "
                                 "the chart",
                "NoConsumer": "the claim's StorageClass binds only when a pod mounts it, and nothing in the chart does: "
                              "mount it or use an Immediate class",
                "ClaimLost": "the claim's volume is gone: restore it from a snapshot or recreate the claim",
            })
