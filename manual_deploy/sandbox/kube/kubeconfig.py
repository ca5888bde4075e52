"""Kubeconfig files pointing real clients (helm, kubectl, the kubernetes package) at an emulator.

Cluster, user and context all carry the context's name, as the ingest Terraform writes them for
EKS, so the product resolves `--kube-context ingest-eks-prod` exactly as it does in production.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from manual_deploy.sandbox.kube import certs

# The ingest EKS contexts and the namespace each environment deploys into.
INGEST_CONTEXTS = {
    "ingest-eks-dev": "dev-environment",
    "ingest-eks-staging": "staging-environment",
    "ingest-eks-prod": "prod-environment",
}


def ingest_contexts(server_url: str) -> dict[str, tuple[str, str]]:
    """The three ingest contexts, all served by one emulator at `server_url`."""
    return {context: (server_url, namespace) for context, namespace in INGEST_CONTEXTS.items()}


def write_kubeconfig(path: Path, contexts: dict[str, tuple[str, str]], *, token: str | None = None,
                     current: str | None = None, ca_pem: bytes | None = None) -> Path:
    """Write a kubeconfig with one cluster+user+context per entry of {context: (server_url, namespace)}.

    https servers get `certificate-authority-data`: `ca_pem`, else the CA of the emulator running in
    this process at that URL. The file is created 0600 (it may hold a token) and replaced
    atomically, so a client never reads half of it.
    """
    if not contexts:
        raise ValueError("a kubeconfig needs at least one context")
    if current is not None and current not in contexts:
        raise ValueError(f"current context {current!r} is not among {sorted(contexts)}")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": _cluster(url, ca_pem)} for name, (url, _) in contexts.items()],
        "users": [{"name": name, "user": {"token": token} if token else {}} for name in contexts],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
                     for name, (_, namespace) in contexts.items()],
        "current-context": current or next(iter(contexts)),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    tmp.replace(path)
    return path


def _cluster(url: str, ca_pem: bytes | None) -> dict[str, str]:
    cluster = {"server": url}
    ca = ca_pem or (certs.ca_for(url) if url.startswith("https://") else None)
    if ca:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode("ascii")
    return cluster
