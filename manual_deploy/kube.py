"""Which cluster: the env's kube context, proven to exist (and to point where the config says).

Deploying to the wrong cluster is the worst thing this tool could do, so the target is resolved
from the config, checked against the kubeconfig before anything talks to a cluster, and printed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from manual_deploy.config import Config
from manual_deploy.errors import Refused

DEFAULT_KUBECONFIG = "~/.kube/config"


@dataclass(frozen=True)
class Target:
    env: str
    context: str
    namespace: str
    server: str
    kubeconfig: str  # one path or a ':'-separated list, as KUBECONFIG allows

    def banner(self) -> str:
        return f"env {self.env} · context {self.context} · server {self.server} · namespace {self.namespace}"


def kubeconfig_path(explicit: str | None) -> str:
    """--kubeconfig, else $KUBECONFIG, else ~/.kube/config (read now, not at import time)."""
    return explicit or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG


def merged_kubeconfig(path: str) -> dict:
    """clusters/contexts/users of every file in `path` (':'-separated); the first definition wins, as in kubectl."""
    import yaml

    from manual_deploy import yamlio

    existing = [Path(p).expanduser() for p in path.split(os.pathsep) if p and Path(p).expanduser().is_file()]
    if not existing:
        raise Refused(f"no kubeconfig found at {path}", hint=context_hint(None))
    merged: dict[str, list] = {"clusters": [], "contexts": [], "users": []}
    for file in existing:
        data = _read_kubeconfig(file, yaml, yamlio)
        for key, items in merged.items():
            seen = {item.get("name") for item in items}
            items.extend(i for i in data.get(key) or [] if isinstance(i, dict) and i.get("name") not in seen)
    return merged


def _read_kubeconfig(file: Path, yaml, yamlio) -> dict:
    """One kubeconfig file as a mapping, or a refusal that names the file and what is wrong with it."""
    fix = f"fix or regenerate it ({context_hint(None)}), or point --kubeconfig / KUBECONFIG at another file"
    try:
        data = yamlio.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise Refused(f"cannot read kubeconfig {file}: it is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                      f"at offset {exc.start})", hint=fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise Refused(f"cannot read kubeconfig {file}: not valid YAML{where}: {problem}", hint=fix) from None
    except OSError as exc:
        raise Refused(f"cannot read kubeconfig {file}: {exc.strerror}", hint=fix) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Refused(f"cannot read kubeconfig {file}: it holds a YAML {type(data).__name__}, not a kubeconfig "
                      "(a mapping with clusters, contexts and users)", hint=fix)
    return data


def context_hint(env: str | None) -> str:
    """How the on-call gets an env's kube context (`None`: any env), for every refusal about a missing one."""
    which = env or "<env>"
    return (
        f"get the context: in ingest-kube-deployment `source config/environment_{which}; cd infra; "
        f"make retrieve-kubeconfig-{which}`, or `aws eks update-kubeconfig --name ingest-eks-{which} "
        f"--alias ingest-eks-{which} --region us-east-1`"
    )


def named(items: list | None, name: str) -> dict | None:
    """The entry called `name` of a kubeconfig list (clusters, contexts, users), as kubectl finds it."""
    return next((item for item in items or [] if isinstance(item, dict) and item.get("name") == name), None)


def resolve_target(config: Config, env_name: str, *, kubeconfig: str | None = None, context: str | None = None, out=None,
                   credentials: bool = True) -> Target:
    """The env's context and namespace, refusing (exit 3) when the kubeconfig disagrees.

    With `credentials` (every command that talks to the cluster), an `exec` user's plugin is run once
    here, before anything else: an expired login is one clear refusal, not a client's stack of errors.
    """
    env = config.environment(env_name)
    path = kubeconfig_path(kubeconfig)
    wanted = context or env.kube_context
    if context and context != env.kube_context and out is not None:
        out.warn(f"--kube-context {context} overrides {env_name}'s configured context {env.kube_context}")
    data = merged_kubeconfig(path)
    entry = named(data.get("contexts"), wanted)
    if entry is None:
        known = ", ".join(c.get("name", "?") for c in data.get("contexts") or []) or "none"
        raise Refused(f"kube context {wanted!r} is not in {path} (contexts: {known})", hint=context_hint(env_name))
    cluster_name = (entry.get("context") or {}).get("cluster")
    cluster = named(data.get("clusters"), cluster_name) if cluster_name else None
    server = ((cluster or {}).get("cluster") or {}).get("server")
    if not server:
        raise Refused(f"kube context {wanted!r} names cluster {cluster_name!r}, which has no server in {path}",
                      hint=f"the kubeconfig entry is incomplete: regenerate it ({context_hint(env_name)})")
    if env.cluster_server and server.rstrip("/") != env.cluster_server.rstrip("/"):
        raise Refused(
            f"kube context {wanted!r} points at {server}, but env {env_name} must be {env.cluster_server}",
            hint="you may be about to deploy to the wrong cluster; fix the kubeconfig or the config's cluster_server",
        )
    target = Target(env=env_name, context=wanted, namespace=env.namespace, server=server, kubeconfig=path)
    if credentials:
        ensure_credentials(target, data)
    return target


def context_user(target: Target, data: dict | None = None):
    """The credentials.User of the target's context (an exec plugin's relative command: relative to its file)."""
    from manual_deploy import credentials

    first = next((Path(p).expanduser() for p in target.kubeconfig.split(os.pathsep) if p and Path(p).expanduser().is_file()), None)
    return credentials.user_of(data or merged_kubeconfig(target.kubeconfig), target.context,
                               first.parent if first else None)


def ensure_credentials(target: Target, data: dict | None = None) -> None:
    """Obtain an exec user's token now (bounded), or refuse with the plugin's words and the fix."""
    from manual_deploy import credentials

    user = context_user(target, data)
    if user.kind == "exec":
        credentials.obtain(user)


def api_message(exc) -> str:
    """The apiserver's own words from an ApiException's Status body (a 403 names the verb and the resource),
    never its headers."""
    import json

    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except (ValueError, AttributeError, TypeError):
        return str(exc.reason)


def is_api_error(exc: BaseException) -> bool:
    """An answer of the Kubernetes API (ApiException or a subclass such as UnauthorizedException), told apart
    without importing kubernetes."""
    return any(cls.__name__ == "ApiException" for cls in type(exc).__mro__)


def is_refusal(exc: BaseException) -> bool:
    """The Kubernetes API said no to who we are (401) or to what we asked (403): a person must act, retrying won't help."""
    return is_api_error(exc) and getattr(exc, "status", None) in (401, 403)


def refusal(exc, *, env: str | None = None, message: str | None = None, need: str | None = None,
            hint: str | None = None) -> Refused:
    """The one wording of an API refusal (see `is_refusal`), whichever command met it.

    `message`: what was being done (`cannot take the deploy lock …`); `need`: the permission to ask for;
    `hint` replaces the default next step. Says what the API said, never its headers or the rest of its body."""
    said, doctor = api_message(exc), f"`manual-deploy doctor --env {env or '<env>'}`"
    if exc.status == 401:
        text = f"the cluster refused the credentials (HTTP 401 {said})"
        default = (f"{doctor} says why: an expired login, a wrong AWS_PROFILE, "
                   "or a role not mapped in the cluster's aws-auth")
        return Refused(f"{message}: {text}" if message else text, hint=hint or default)
    default = f"ask a cluster admin for {need or 'that permission'}; {doctor} lists every permission a deploy needs"
    return Refused(f"{message or 'not allowed'}: {said} (HTTP {exc.status})", hint=hint or default)


_SAYS = ("Connection refused", "timed out", "Name or service not known", "No route to host",
         "Temporary failure in name resolution", "Network is unreachable", "certificate verify failed")


def error_line(exc: BaseException) -> str:
    """Any failure in one line (`HTTP 503 Service Unavailable`, `ConnectionError: Connection refused`): without the
    noise urllib3 wraps around it, and never an API error's headers or body (they may echo a request)."""
    status = getattr(exc, "status", None)
    if is_api_error(exc) and status:
        return f"HTTP {status} {exc.reason or ''}".strip()
    text = str(exc)
    said = next((marker for marker in _SAYS if marker in text), None)
    if said is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return type(exc).__name__
        said = lines[-1][:200]
    return f"{type(exc).__name__}: {said}"


def api_client(target: Target, *, retries: bool = True, anonymous: bool = False):
    """An ApiClient for exactly this context (never the kubeconfig's current-context).

    `retries=False`: without urllib3's own 3 retries, so a request to a frozen API fails within its
    timeout instead of four times it — for callers that retry blips themselves or must answer in time.
    `anonymous`: the context's cluster (server, CA) with no user at all, so no exec plugin runs and no
    credential is sent — what proves reachability and nothing more."""
    from kubernetes import client
    from kubernetes import config as kube_config

    if anonymous:
        loaded = kube_config.new_client_from_config_dict(_anonymous_kubeconfig(target), context=target.context,
                                                         persist_config=False)
    else:
        loaded = kube_config.new_client_from_config(config_file=target.kubeconfig, context=target.context,
                                                    persist_config=False)
    if retries:
        return loaded
    configuration = loaded.configuration
    loaded.close()
    configuration.retries = False
    return client.ApiClient(configuration)


def _anonymous_kubeconfig(target: Target) -> dict:
    """The target's context and cluster as a kubeconfig whose only user has no credentials."""
    data = merged_kubeconfig(target.kubeconfig)
    context = named(data.get("contexts"), target.context) or {}
    cluster_name = (context.get("context") or {}).get("cluster")
    cluster = named(data.get("clusters"), cluster_name) or {"name": cluster_name, "cluster": {"server": target.server}}
    return {"clusters": [cluster], "users": [{"name": "anonymous", "user": {}}],
            "contexts": [{"name": target.context, "context": {"cluster": cluster_name, "user": "anonymous"}}],
            "current-context": target.context}


# kubernetes' API and model modules import one another. Two threads importing that web from
# different ends (the warm-up and the lock threads) can get a half-initialised module from Python's
# import deadlock breaker, so the lock's modules are imported here, by one thread at a time.
_IMPORTING = threading.Lock()


def import_lock_client() -> None:
    """The kubernetes modules a deploy lock is taken with: kubeconfig loading and the Lease API."""
    with _IMPORTING:
        from kubernetes import config  # noqa: F401
        from kubernetes.client import CoordinationV1Api, V1Lease, V1LeaseSpec, V1ObjectMeta  # noqa: F401
        from kubernetes.client.exceptions import ApiException  # noqa: F401


def network_reason(exc: BaseException) -> str:
    """A network failure in a few words (`TLS handshake timeout`, `connection refused`, `HTTP 503`), never a URL or header."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    text = f"{exc} {getattr(exc, 'reason', '')}".lower()
    for needle, words in (("handshake", "TLS handshake timeout"), ("read timed out", "read timeout"),
                          ("timed out", "connect timeout"), ("refused", "connection refused"), ("reset", "connection reset"),
                          ("unreachable", "network unreachable"), ("name or service", "unknown host"),
                          ("remotedisconnected", "connection closed"), ("eof", "connection closed")):
        if needle in text:
            return words
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """A blip worth retrying: the network (timeouts, resets, TLS) or the apiserver's 429/5xx; never a 4xx verdict."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        return status == 429 or status >= 500
    import urllib3.exceptions

    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError))
