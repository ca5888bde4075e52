"""What the kubelet checks per container before and after starting it: env sources and readiness probes.

A missing Secret or Secret key is not injected: the kubelet resolves `env[].valueFrom` and
`envFrom[]` against the store on every attempt, so the container waits in CreateContainerConfigError
until someone creates the Secret, as in a real cluster. The probe texts are the kubelet's own, so
diagnostics can be tested on what `kubectl describe pod` really shows.
"""

from __future__ import annotations

from typing import Any

from manual_deploy_sandbox.kube.resources import by_path
from manual_deploy_sandbox.kube.store import Store

SECRETS = by_path("v1/secrets")
CONFIGMAPS = by_path("v1/configmaps")
DEFAULT_PROBE_PERIOD = 10  # seconds, the API default of periodSeconds
MIN_PROBE_PERIOD = 1.0


def config_error(container: dict[str, Any], namespace: str, store: Store) -> str | None:
    """The kubelet's CreateContainerConfigError message for this container, None if its env resolves."""
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        for field, res, kind in (("secretKeyRef", SECRETS, "Secret"), ("configMapKeyRef", CONFIGMAPS, "ConfigMap")):
            ref = source.get(field)
            if ref and not ref.get("optional"):
                found = store.get(res, namespace, ref.get("name", ""), copy=False)
                if found is None:
                    return f'{kind.lower()} "{ref.get("name", "")}" not found'
                if ref.get("key") not in (found.get("data") or {}) | (found.get("binaryData") or {}):
                    return f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name', '')}"
    for env_from in container.get("envFrom") or []:
        for field, res, kind in (("secretRef", SECRETS, "secret"), ("configMapRef", CONFIGMAPS, "configmap")):
            ref = env_from.get(field)
            if ref and not ref.get("optional") and store.get(res, namespace, ref.get("name", ""), copy=False) is None:
                return f'{kind} "{ref.get("name", "")}" not found'
    return None


def mount_error(pod: dict[str, Any], store: Store) -> tuple[str, str] | None:
    """(volume, the kubelet's MountVolume.SetUp message) for a Secret/ConfigMap volume that cannot be set
    up, None when every such volume resolves. Checked on every sync: creating it later lets the pod start."""
    namespace = pod["metadata"]["namespace"]
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for field, res, kind, name_key in (("secret", SECRETS, "secret", "secretName"),
                                           ("configMap", CONFIGMAPS, "configmap", "name")):
            source = volume.get(field)
            if source is None or source.get("optional"):
                continue
            name = source.get(name_key, "")
            found = store.get(res, namespace, name, copy=False)
            if found is None:
                return volume["name"], f'MountVolume.SetUp failed for volume "{volume["name"]}" : {kind} "{name}" not found'
            keys = (found.get("data") or {}) | (found.get("binaryData") or {})
            missing = next((i.get("key") for i in source.get("items") or [] if i.get("key") not in keys), None)
            if missing is not None:
                return volume["name"], (f'MountVolume.SetUp failed for volume "{volume["name"]}" : references '
                                        f"non-existent {kind} key: {missing}")
    return None


def probe_period(probe: dict[str, Any]) -> float:
    """periodSeconds as given (default 10 s), at least 1 s so the Event count stays bounded."""
    return max(float(probe.get("periodSeconds") or DEFAULT_PROBE_PERIOD), MIN_PROBE_PERIOD)


def probe_failures(probe: dict[str, Any], running_for: float) -> int:
    """How many probes have failed after the container has run this long (initialDelaySeconds as is)."""
    delay = float(probe.get("initialDelaySeconds") or 0)
    return 0 if running_for < delay else 1 + int((running_for - delay) / probe_period(probe))


def probe_message(kind: str, probe: dict[str, Any], pod_ip: str, log: str) -> str:
    """`Readiness probe failed: ...` as the kubelet words it for each probe handler."""
    prefix = f"{kind} probe failed: "
    if probe.get("httpGet") is not None:
        return prefix + "HTTP probe failed with statuscode: 503"
    if probe.get("tcpSocket") is not None:
        port = probe["tcpSocket"].get("port")
        return prefix + f"dial tcp {pod_ip}:{port}: connect: connection refused"
    if probe.get("grpc") is not None:
        return prefix + f'timeout: failed to connect service ":{probe["grpc"].get("port")}" within 1s'
    return prefix + log.strip()
