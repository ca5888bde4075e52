"""What to do about a failure, by its reason: the `next:` line a person on call can act on.

An image that does not pull or start is fixed by a new image (the verb says how). Everything else is
fixed in the cluster or in ingest-kube-deployment, and then the same command is run again.
"""

from __future__ import annotations

from manual_deploy.readiness.resource_state import Failure

IMAGE_AT_FAULT = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
                            "CreateContainerError", "OOMKilled"})

_REMEDIES = {
    "ProvisioningFailed": "create the StorageClass the claim names in the cluster, or fix its storageClassName in "
                          "ingest-kube-deployment (`kubectl get storageclass` lists what exists)",
    "FailedBinding": "the claim names no StorageClass and the cluster has no default: set storageClassName in the chart",
    "NoConsumer": "the claim's StorageClass binds only when a pod mounts it, and nothing in the chart does: mount it or "
                  "use an Immediate class",
    "ClaimLost": "the claim's volume is gone: restore it from a snapshot or recreate the claim",
    "FailedScheduling": "the cluster cannot place the pod (the scheduler's words are above): free or add nodes, or lower "
                        "the chart's resource requests (`kubectl describe nodes` shows what is allocated)",
    "Unhealthy": "the app runs but its probe keeps failing: read its logs (`kubectl logs -n {namespace} <pod>`) and check "
                 "the probe's path and port; fix the app or the chart",
    "CreateContainerConfigError": "create the Secret or ConfigMap key the pod needs in {namespace} "
                                  "(`kubectl -n {namespace} get secret`), or fix the reference in the chart",
    "FailedAttachVolume": "the volume cannot attach (Multi-Attach: the old pod still holds a ReadWriteOnce volume; "
                          "`kubectl -n {namespace} get pods -o wide` shows where); free it",
    "FailedMount": "a volume cannot be mounted: create the Secret or ConfigMap (or the key) it names in {namespace}, "
                   "or free the disk it waits for (the events above say which)",
    "SyncLoadBalancerFailed": "the cloud refused the load balancer (quota, subnets: see the event); fix that",
    "ProgressDeadlineExceeded": "the Deployment stopped progressing: the pods' own states above say why",
    "BackoffLimitExceeded": "the chart's Job failed: read its logs (`kubectl -n {namespace} logs job/<name>`)",
}


def remedy(failure: Failure, namespace: str) -> str | None:
    """The fix for a failure that no new image would fix; None when the image is at fault."""
    if failure.reason in IMAGE_AT_FAULT:
        return None
    text = _REMEDIES.get(failure.reason, f"fix the {failure.kind}'s {failure.reason} (its events above say why)")
    return text.format(namespace=namespace)
