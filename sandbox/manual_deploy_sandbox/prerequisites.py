"""What a config repo's charts expect the cluster to have already: Secrets (and their keys) and StorageClasses.

A real EKS namespace has the team's `aws-keys` and `api-keys` Secrets and the `retained-gp2` class; a fresh
sandbox has none. Rather than hard-code names, each chart is rendered the way apply renders it (`helm
template` with `apps/<env>.yaml` and apply's overrides) and its manifests are read for what they
reference; the sandbox then creates exactly that, with dummy values. Any repository works this way:
the generated fixture and a clone of the team's own.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from manual_deploy import yamlio

RENDER_TIMEOUT_S = 60
DUMMY_VALUE = "sandbox-dummy-value"


@dataclass
class Needs:
    """Per namespace: Secret name -> the keys referenced; and the StorageClasses named anywhere."""

    secrets: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    storage_classes: set[str] = field(default_factory=set)

    def secret(self, namespace: str, name: str, keys: Iterable[str] = ()) -> None:
        self.secrets.setdefault(namespace, {}).setdefault(name, set()).update(k for k in keys if k)


def render(helm: str, chart: Path, values_file: Path, overrides: dict[str, str], namespace: str) -> str:
    """`helm template` as apply would install it (no cluster needed)."""
    argv = [helm, "template", chart.name, str(chart), "--namespace", namespace, "-f", str(values_file)]
    for key, value in overrides.items():
        argv += ["--set-string", f"{key}={value}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"helm template {chart.name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def read(manifests: str, namespace: str, needs: Needs) -> Needs:
    """Add what these rendered manifests reference (pod specs of every workload kind, claims)."""
    for doc in yamlio.safe_load_all(manifests):
        if not isinstance(doc, dict):
            continue
        ns = (doc.get("metadata") or {}).get("namespace") or namespace
        if doc.get("kind") == "PersistentVolumeClaim":
            name = (doc.get("spec") or {}).get("storageClassName")
            if name:
                needs.storage_classes.add(name)
        spec = _pod_spec(doc)
        if spec is not None:
            _read_pod(spec, ns, needs)
    return needs


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec
    if doc.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    template = spec.get("template") if isinstance(spec, dict) else None
    return (template or {}).get("spec") if isinstance(template, dict) else None


def _read_pod(spec: dict[str, Any], namespace: str, needs: Needs) -> None:
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in container.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef")) or {}
            if ref.get("name") and not ref.get("optional"):
                needs.secret(namespace, ref["name"], [ref.get("key", "")])
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or {}
            if ref.get("name") and not ref.get("optional"):
                needs.secret(namespace, ref["name"])
    for volume in spec.get("volumes") or []:
        secret = volume.get("secret") or {}
        if secret.get("secretName") and not secret.get("optional"):
            needs.secret(namespace, secret["secretName"], [i.get("key", "") for i in secret.get("items") or []])


def seed(kube, needs: Needs) -> list[str]:
    """Create what is needed in the emulator (dummy values; existing objects are completed, not replaced).

    Returns one line per object created, for the sandbox's log."""
    import base64

    made = []
    for name in sorted(needs.storage_classes):
        if kube.get("storage.k8s.io/v1/storageclasses", None, name) is None:
            kube.create("storage.k8s.io/v1/storageclasses", None, {
                "metadata": {"name": name}, "provisioner": "kubernetes.io/aws-ebs", "reclaimPolicy": "Retain",
                "volumeBindingMode": "Immediate", "parameters": {"type": "gp2"}})
            made.append(f"StorageClass {name}")
    for namespace, secrets in sorted(needs.secrets.items()):
        for name, keys in sorted(secrets.items()):
            data = {key: base64.b64encode(DUMMY_VALUE.encode()).decode() for key in sorted(keys) or ["placeholder"]}
            existing = kube.get("v1/secrets", namespace, name)
            if existing is None:
                kube.create("v1/secrets", namespace, {"metadata": {"name": name}, "type": "Opaque", "data": data})
                made.append(f"Secret {namespace}/{name} ({', '.join(sorted(data))})")
            elif set(data) - set(existing.get("data") or {}):
                kube.replace("v1/secrets", namespace, name, {**existing, "data": {**data, **(existing.get("data") or {})}})
                made.append(f"Secret {namespace}/{name} completed ({', '.join(sorted(set(data) - set(existing.get('data') or {})))})")
    return made
