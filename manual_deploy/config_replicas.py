"""The replicas the deploy-config repo sets, per env and app: what GitLab's deploy job would pass to helm.

`status` compares them with what the Deployments want. The repo is extra information there: one that
cannot be read is a warning per env, never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from manual_deploy import deployconfig
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.errors import ManualDeployError
from manual_deploy.kube import error_line
from manual_deploy.redact import redact


@dataclass
class ConfigReading:
    """One env's reading: the commit read, each app's replicas (None: not set there, or not read), and what went wrong."""

    sha: str | None = None
    replicas: dict[str, int | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def expected_replicas(config: Config, envs: list[str], apps: list[ResolvedApp]) -> dict[str, ConfigReading]:
    """Per env, the replicas the config repo sets; a repo that cannot be read is a warning, not a failure.

    Branches are checked out one after the other into the one cache clone, and each env's file is read
    before the next checkout replaces it.
    """
    readings: dict[str, ConfigReading] = {env: ConfigReading() for env in envs}
    for branch, branch_envs in _by_branch(config, envs).items():
        try:
            checkout = deployconfig.checkout(config.deployment_repo.url, branch)
        except Exception as exc:  # network, auth, git missing: the replicas check is optional
            for env in branch_envs:
                readings[env].warnings.append(redact(f"deploy config not read ({exc.message if isinstance(exc, ManualDeployError) else error_line(exc)}); replicas not checked against it"))
            continue
        for env in branch_envs:
            readings[env].sha = checkout.sha
            readings[env].replicas = _replicas_of(checkout, env, apps, readings[env].warnings)
    return readings


def _by_branch(config: Config, envs: list[str]) -> dict[str, list[str]]:
    """Envs grouped by their config branch, so each branch is checked out once."""
    grouped: dict[str, list[str]] = {}
    for env in envs:
        grouped.setdefault(config.environment(env).config_branch, []).append(env)
    return grouped


def _replicas_of(checkout, env: str, apps: list[ResolvedApp], warnings: list[str]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for app in apps:
        if app.replicas_variable is None:
            counts[app.name] = None  # the chart hard-codes its replicas
            continue
        try:
            counts[app.name] = deployconfig.replica_count(checkout, env, app.replicas_variable, None)
        except ManualDeployError as exc:
            counts[app.name] = None
            warnings.append(f"{app.name}: {exc.message}; replicas not checked")
    return counts
