"""An emulated kube-apiserver (built on kmock) that the real helm 3/4 and the kubernetes client accept.

    with KubeEmulator(token="t") as kube:
        write_kubeconfig(path, ingest_contexts(kube.url), token="t")
        kube.add_failure("quay.io/ucsc_cgl/ingest-core:bad*", "ImagePullBackOff")

Module map: resources (what is served, discovery), store (objects, resourceVersions, change log),
admission (server-filled fields, refusals), cluster (write semantics), patching, selectors,
protobuf, controller (Deployments/ReplicaSets), scheduler (placement, resource fit), storage
(StorageClasses, claims, volumes), kubelet (pods, failures, logs), containers (env sources, probes),
volumes (attach failures), events, workloads (Jobs, StatefulSets, DaemonSets), cronjobs (CronJobs
run on demand), ingresses (the load balancer controller), api (HTTP), auth (tokens, RBAC denials,
SelfSubjectAccessReview), emulator (thread + lifecycle), certs (HTTPS), kubeconfig, exec_plugin (an
`aws eks get-token` stand-in).

The names below are imported on first use: the exec plugin lives in this package and clients run
it before every token refresh, so importing the package must not pull in aiohttp and kmock.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KubeEmulator": "emulator", "INGEST_CONTEXTS": "kubeconfig", "ExecUser": "kubeconfig",
    "exec_user": "kubeconfig", "ingest_contexts": "kubeconfig", "write_kubeconfig": "kubeconfig",
    "FAILURE_MODES": "kubelet", "READINESS_PROBE_FAILED": "kubelet", "FAILED_ATTACH_VOLUME": "volumes",
    "MULTI_ATTACH": "volumes", "VOLUME_FAILURE_MODES": "volumes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
