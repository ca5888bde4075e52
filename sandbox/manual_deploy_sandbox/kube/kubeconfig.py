"""Kubeconfig files pointing real clients (helm, kubectl, the kubernetes package) at an emulator.

Cluster, user and context all carry the context's name, as the ingest Terraform writes them for
EKS, so the product resolves `--kube-context ingest-eks-prod` exactly as it does in production.
The user is a static token, or (like the kubeconfig `aws eks update-kubeconfig` writes) an `exec`
credential plugin: exec_plugin.py, standing in for `aws eks get-token`.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from manual_deploy_sandbox.kube import certs
from manual_deploy_sandbox.kube.exec_plugin import KEY_ENV, MODE_ENV, V1ALPHA1, V1BETA1

# The ingest EKS contexts and the namespace each environment deploys into.
INGEST_CONTEXTS = {
    "ingest-eks-dev": "dev-environment",
    "ingest-eks-staging": "staging-environment",
    "ingest-eks-prod": "prod-environment",
}


def ingest_contexts(server_url: str) -> dict[str, tuple[str, str]]:
    """The three ingest contexts, all served by one emulator at `server_url`."""
    return {context: (server_url, namespace) for context, namespace in INGEST_CONTEXTS.items()}


@dataclass(frozen=True)
class ExecUser:
    """A kubeconfig `user.exec` entry; `args` None = the stand-in plugin for the context's cluster.

    `env` is (name, value) pairs, in order. interactiveMode is Never (v1beta1, v1): a deploy must
    not stop at a prompt; v1alpha1 has no such field (and helm >= 3.9 refuses v1alpha1 anyway).
    """

    env: Sequence[tuple[str, str]] = ()
    api_version: str = V1BETA1
    command: str = field(default_factory=lambda: sys.executable)
    args: Sequence[str] | None = None
    region: str = "us-east-1"
    extra_args: Sequence[str] = ()  # appended to the default args (e.g. --ttl 2)

    def entry(self, context: str) -> dict[str, Any]:
        args = list(self.args) if self.args is not None else [
            "-m", "manual_deploy_sandbox.kube.exec_plugin", "--cluster-name", context, "--region", self.region,
            *self.extra_args]
        entry: dict[str, Any] = {"apiVersion": self.api_version, "command": self.command, "args": args,
                                 "env": [{"name": name, "value": value} for name, value in self.env]}
        if self.api_version != V1ALPHA1:
            entry["interactiveMode"] = "Never"
        entry["provideClusterInfo"] = False
        return entry


def exec_user(emulator: Any, mode: str = "ok", *, api_version: str = V1BETA1, profile: str | None = "ingest",
              ttl: float | None = None, user: str | None = None,
              extra_env: Sequence[tuple[str, str]] = ()) -> ExecUser:
    """The stand-in plugin, keyed for `emulator` (anything with `token_key`), failing as `mode`.

    ttl and user become plugin args (--ttl, --user); extra_env is appended (e.g. the plugin's log).
    """
    if not getattr(emulator, "token_key", None):
        raise ValueError("the emulator has no token_key: start it with KubeEmulator(token_key=...)")
    env = [(KEY_ENV, emulator.token_key)]
    if profile is not None:
        env.append(("AWS_PROFILE", profile))
    env.append((MODE_ENV, mode))
    extra_args = [*(["--ttl", str(ttl)] if ttl is not None else []), *(["--user", user] if user else [])]
    return ExecUser(env=(*env, *extra_env), api_version=api_version, extra_args=tuple(extra_args))


def write_kubeconfig(path: Path, contexts: dict[str, tuple[str, str]], *, token: str | None = None,
                     current: str | None = None, ca_pem: bytes | None = None,
                     exec_user: ExecUser | None = None) -> Path:
    """Write a kubeconfig with one cluster+user+context per entry of {context: (server_url, namespace)}.

    The user is `exec_user` (an exec credential plugin) when given, else `token`, else nobody.

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
        "users": [{"name": name, "user": _user(name, token, exec_user)} for name in contexts],
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


def _user(context: str, token: str | None, plugin: ExecUser | None) -> dict[str, Any]:
    if plugin is not None:
        return {"exec": plugin.entry(context)}
    return {"token": token} if token else {}


def _cluster(url: str, ca_pem: bytes | None) -> dict[str, str]:
    cluster = {"server": url}
    ca = ca_pem or (certs.ca_for(url) if url.startswith("https://") else None)
    if ca:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode("ascii")
    return cluster
