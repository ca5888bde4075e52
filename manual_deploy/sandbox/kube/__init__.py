"""An emulated kube-apiserver (built on kmock) that the real helm 3/4 and the kubernetes client accept.

    with KubeEmulator(token="t") as kube:
        write_kubeconfig(path, ingest_contexts(kube.url), token="t")
        kube.add_failure("quay.io/ucsc_cgl/ingest-core:bad*", "ImagePullBackOff")

Module map: resources (what is served, discovery), store (objects, resourceVersions, change log),
admission (server-filled fields, refusals), cluster (write semantics), patching, selectors, protobuf,
controller (Deployments/ReplicaSets), scheduler (placement, resource fit), storage (StorageClasses,
claims, volumes), kubelet (pods, failures, logs), containers (env sources, probes), volumes (attach
failures), events, workloads (Jobs, StatefulSets, DaemonSets), api (HTTP), emulator (thread +
lifecycle), certs (HTTPS), kubeconfig.
"""

from manual_deploy.sandbox.kube.emulator import KubeEmulator
from manual_deploy.sandbox.kube.kubeconfig import INGEST_CONTEXTS, ingest_contexts, write_kubeconfig
from manual_deploy.sandbox.kube.kubelet import FAILURE_MODES, READINESS_PROBE_FAILED
from manual_deploy.sandbox.kube.volumes import FAILED_ATTACH_VOLUME, MULTI_ATTACH, VOLUME_FAILURE_MODES

__all__ = ["FAILED_ATTACH_VOLUME", "FAILURE_MODES", "INGEST_CONTEXTS", "MULTI_ATTACH", "READINESS_PROBE_FAILED",
           "VOLUME_FAILURE_MODES", "KubeEmulator", "ingest_contexts", "write_kubeconfig"]
