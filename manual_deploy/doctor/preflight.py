"""The local checks everything else depends on: the config, the kubeconfig, and each env's context."""

from __future__ import annotations

import os

from manual_deploy import kube
from manual_deploy.config import CONFIG_ENV_VAR, Config, load_config
from manual_deploy.doctor.report import FAIL, OK, Finding
from manual_deploy.errors import ManualDeployError

CONFIG_ORIGINS = {"option": "--config", "env": f"${CONFIG_ENV_VAR}", "bundled": "bundled"}


def config_check(config_path: str | None, config_origin: str) -> tuple[Config | None, Finding]:
    """Everything else reads the config, so a broken one is the first thing to say."""
    origin = CONFIG_ORIGINS.get(config_origin, config_origin)
    try:
        config = load_config(config_path)
    except ManualDeployError as exc:
        hint = f"{exc.hint}; the other checks need a valid config" if exc.hint else "fix the config file"
        return None, Finding("config", FAIL, f"{exc.message} (from {origin})", hint)
    where = config.source if config_origin == "bundled" else f"{config.source} (from {origin})"
    detail = f"{where}: {len(config.environments)} envs, {len(config.apps)} apps"
    return config, Finding("config", OK, detail)


def selected_envs(config: Config, wanted: tuple[str, ...]) -> list[str]:
    """The envs asked for (every configured one by default); an unknown one is a usage error (exit 2)."""
    if not wanted:
        return list(config.environments)
    for env in wanted:
        config.environment(env)
    return list(dict.fromkeys(wanted))


def _kubeconfig_files(explicit: str | None) -> tuple[str, list[str]]:
    path = kube.kubeconfig_path(explicit)
    files = [p for p in path.split(os.pathsep) if p and os.path.isfile(os.path.expanduser(p))]
    return path, files


def kubeconfig_check(explicit: str | None) -> Finding:
    path, files = _kubeconfig_files(explicit)
    if not files:
        return Finding("kubeconfig", FAIL, f"no kubeconfig at {path}",
                       f"pass --kubeconfig PATH or set KUBECONFIG; {kube.context_hint(None)}")
    return Finding("kubeconfig", OK, ", ".join(files))


def context_check(config: Config, env: str, explicit: str | None) -> tuple[Finding, kube.Target | None]:
    """The env's context exists (and points at cluster_server when configured): what `apply` insists on."""
    name = f"context {env}"
    path, files = _kubeconfig_files(explicit)
    if not files:
        return Finding(name, FAIL, f"no kubeconfig at {path}", kube.context_hint(env)), None
    try:
        target = kube.resolve_target(config, env, kubeconfig=explicit, credentials=False)
    except ManualDeployError as exc:
        return Finding(name, FAIL, exc.message, exc.hint or kube.context_hint(env)), None
    return Finding(name, OK, f"{target.context} → {target.server} (namespace {target.namespace})"), target


def kubeconfig_secrets(explicit: str | None) -> tuple[str, ...]:
    """The bearer tokens and passwords in the kubeconfig: masked in the report like the environment's secrets."""
    try:
        users = kube.merged_kubeconfig(kube.kubeconfig_path(explicit)).get("users") or []
    except ManualDeployError:
        return ()
    found = ((user.get("user") or {}) for user in users)
    return tuple(str(u[key]) for u in found if isinstance(u, dict) for key in ("token", "password") if u.get(key))
