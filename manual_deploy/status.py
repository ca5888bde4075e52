"""`status`: what runs where — GitLab's Environments page, rebuilt from helm and the cluster.

Read-only. Per app and env it joins four sources: the helm release (revision, the `image` value,
the description `apply` writes: who, why, config SHA), the Deployment (the image really running,
ready/desired replicas), the deploy lock (a deploy running now, or one that died) and the
deploy-config repo (the replicas GitLab would set). This module reads them, all envs at once, into a
`StatusReport` (status_report.py); where the cluster disagrees with helm or the config repo, that is
drift (drift.py's rule): reported, never fixed. The tables are drawn by views/status.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone

from manual_deploy import record_queue
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.config_replicas import ConfigReading, expected_replicas
from manual_deploy.console import Output
from manual_deploy.drift import find_drift
from manual_deploy.errors import OperationFailed
from manual_deploy.helm import HelmDriver, Revision, driver_for, find_helm, helm_error
from manual_deploy.kube import Target, api_client, api_message, error_line, is_refusal, refusal, resolve_target
from manual_deploy.live_deployment import LiveDeployment, list_deployments
from manual_deploy.lock import holder_of, lease_name
from manual_deploy.redact import redact
from manual_deploy.status_report import (AppStatus, EnvStatus, LockStatus, StatusReport, StatusRequest, app_status, from_records,
                                         reported)

MAX_PARALLEL_READS = 8  # helm subprocesses at once, across all envs and apps
HELM_READ_TIMEOUT_S = 60.0
KUBE_TIMEOUT_S = (10, 30)  # (connect, read): an unreachable EKS endpoint must not hang a 3am check
LOCK_SELECTOR = "app.kubernetes.io/managed-by=manual-deploy"  # the label every deploy lock carries


# --- reading the cluster ----------------------------------------------------------------------------


def connect(target: Target):
    """The env's ApiClient, made once and shared by its reads: on EKS each one runs `aws eks get-token`."""
    try:
        return api_client(target)
    except Exception as exc:  # kubeconfig/auth plugin errors
        raise _unreachable(target, exc) from None


def _unreachable(target: Target, exc: BaseException) -> OperationFailed:
    return OperationFailed(
        redact(f"cluster {target.context} ({target.server}) is unreachable: {error_line(exc)}"),
        hint=f"check the VPN/network and your credentials, then `kubectl --context {target.context} get ns`",
    )


def live_deployments(target: Target, kube) -> dict[str, LiveDeployment]:
    """Every Deployment of the env's namespace in one call — which also proves the cluster answers."""
    from kubernetes.client.exceptions import ApiException

    where = f"{target.context}/{target.namespace}"
    try:
        return list_deployments(kube, target.namespace, timeout=KUBE_TIMEOUT_S)
    except ApiException as exc:
        if is_refusal(exc):
            raise refusal(exc, env=target.env, message=f"not allowed to list deployments in {where}",
                          need=f"`list` on deployments in {target.namespace}") from None
        raise OperationFailed(f"cannot read deployments in {where}: HTTP {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors, auth plugin errors
        raise _unreachable(target, exc) from None


def live_locks(target: Target, kube) -> dict[str, LockStatus]:
    """Every deploy lock of the namespace, by Lease name, in one LIST (cheaper than a GET per app).

    Any failure is an OperationFailed whose message is one warning line: the locks are extra
    information, and a role without `list` on leases must still see what runs."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        items = client.CoordinationV1Api(kube).list_namespaced_lease(
            target.namespace, label_selector=LOCK_SELECTOR, _request_timeout=KUBE_TIMEOUT_S).items
    except ApiException as exc:
        why = f"{api_message(exc)} (HTTP {exc.status})"
    except Exception as exc:  # urllib3 connection errors
        why = error_line(exc)
    else:
        read_at = datetime.now(timezone.utc)
        return {lease.metadata.name: LockStatus.of(holder_of(lease), read_at) for lease in items}
    raise OperationFailed(redact(f"deploy locks not read, so a deploy in progress is not shown: {why}"))


async def read_release(helm: HelmDriver, release: str, namespace: str) -> tuple[Revision | None, dict]:
    """The current revision and its user-supplied values (where `image` and `replicas` live)."""
    return await asyncio.wait_for(helm.current_and_values(release, namespace), HELM_READ_TIMEOUT_S)


# --- orchestration -----------------------------------------------------------------------------------


@dataclass
class _Reader:
    """Reads every env's cluster at once; `gate` bounds the helm subprocesses across all of them."""

    config: Config
    apps: list[ResolvedApp]
    kubeconfig: str | None
    gate: asyncio.Semaphore

    async def read_env(self, target: Target, env: EnvStatus) -> None:
        """Fill `env` with one row per app; a cluster that cannot be read sets `env.error`.

        The locks are read alongside the Deployments and the releases, never after them."""
        try:
            kube = await asyncio.to_thread(connect, target)
        except OperationFailed as exc:
            env.error, env.hint = exc.message, exc.hint
            env.records, _ = await asyncio.to_thread(record_queue.team_records, None, target.namespace, target.env)
            return
        records = asyncio.create_task(asyncio.to_thread(record_queue.team_records, kube, target.namespace, target.env))
        locks = asyncio.create_task(self.read_locks(target, kube))
        try:
            deployments = await asyncio.to_thread(live_deployments, target, kube)
        except OperationFailed as exc:
            env.error, env.hint = exc.message, exc.hint
            env.records = (await records)[0]
            return
        helm = await asyncio.to_thread(driver_for, self.config, target, kubeconfig=self.kubeconfig, timeout_s=HELM_READ_TIMEOUT_S)
        env.deployments = deployments
        rows = await asyncio.gather(*(self.read_app(helm, target, app, deployments.get(app.release)) for app in self.apps))
        held, warning = await locks
        for row in rows:
            row.lock = held.get(lease_name(row.app))
        env.apps = {row.app: row for row in rows}
        if warning:
            env.warnings.append(warning)
        env.records, problems = await records
        env.warnings.extend(problems)

    @staticmethod
    async def read_locks(target: Target, kube) -> tuple[dict[str, LockStatus], str | None]:
        """The env's locks, or none and why: never raises, so an unreadable lock never fails status."""
        try:
            return await asyncio.to_thread(live_locks, target, kube), None
        except OperationFailed as exc:
            return {}, exc.message

    async def read_app(self, helm: HelmDriver, target: Target, app: ResolvedApp, live: LiveDeployment | None) -> AppStatus:
        """One release; a release that cannot be read is a row with an error, not a failed command."""
        async with self.gate:
            try:
                current, values = await read_release(helm, app.release, target.namespace)
            except asyncio.TimeoutError:
                error = f"helm did not answer within {HELM_READ_TIMEOUT_S:.0f}s"
            except Exception as exc:  # pyhelm3 errors: no access to the release secrets, a corrupt release
                error = helm_error(exc, f"cannot read release {app.release}").message
            else:
                return app_status(app, current, values, live)
        row = app_status(app, None, {}, live)
        row.status, row.error = "unknown", error
        return row


async def _read_all(config: Config, targets: list[Target], reader: _Reader) -> tuple[list[EnvStatus], dict[str, ConfigReading]]:
    """Clusters and the config repo in parallel: the git fetch must not add to the cluster reads."""
    envs = [
        EnvStatus(t.env, t.context, t.namespace, t.server, config_branch=config.environment(t.env).config_branch)
        for t in targets
    ]
    config_reading = asyncio.create_task(asyncio.to_thread(expected_replicas, config, [t.env for t in targets], reader.apps))
    await asyncio.gather(*(reader.read_env(target, env) for target, env in zip(targets, envs)))
    return envs, await config_reading


def run_status(config: Config, request: StatusRequest, out: Output) -> StatusReport:
    """Resolve every env's target first (exit 3 before any network), then read all of them concurrently."""
    env_names = list(dict.fromkeys(request.envs))
    for name in env_names:
        config.environment(name)
    apps = [config.app(name) for name in dict.fromkeys(request.apps or tuple(config.apps))]
    targets = [resolve_target(config, name, kubeconfig=request.kubeconfig, out=out) for name in env_names]
    find_helm(config.helm.executable)  # no helm: a usage error before any network
    reader = _Reader(config, apps, request.kubeconfig, asyncio.Semaphore(MAX_PARALLEL_READS))
    for target in targets:
        out.step(f"reading {target.banner()}")
    envs, readings = asyncio.run(_read_all(config, targets, reader))
    for env in envs:
        if not env.error:
            compare(env, apps, readings[env.env])
            from_records(env)
    _add_gitlab(config, envs, out)
    if all(env.error for env in envs):
        first = envs[0]
        raise OperationFailed(f"{first.env}: {first.error}", hint=first.hint)
    return StatusReport(envs)


def compare(env: EnvStatus, apps: list[ResolvedApp], reading: ConfigReading) -> None:
    """Each readable row next to the config repo's replicas, with its drift (drift.py's rule) in status's words."""
    env.config_sha = reading.sha
    env.warnings.extend(reading.warnings)
    for app in apps:
        row = env.apps.get(app.name)
        if row is None or row.error:
            continue
        row.config_replicas = reading.replicas.get(app.name)
        if row.deployed:
            found = find_drift(env.deployments.get(app.release), row.image, row.config_replicas, app.image_repo)
            row.drift = [reported(env, app, row, drift) for drift in found]


def _add_gitlab(config: Config, envs: list[EnvStatus], out: Output) -> None:
    """Whether GitLab knows each app's last manual deploy, by anyone on the team (gitlab_records.py: from the
    team's records, no GitLab call, so it works while GitLab is down)."""
    from manual_deploy.gitlab_records import last_deploy_states

    if not config.gitlab.url:
        return
    states = last_deploy_states(config, {(env.env, name): bool(row.deployed_by) for env in envs for name, row in env.apps.items()},
                                [record for env in envs for record in env.records])
    for env in envs:
        for name, row in env.apps.items():
            row.gitlab = states[(env.env, name)]
    missing = [f"{env.env}/{name}" for env in envs for name, row in env.apps.items() if row.gitlab == "not recorded"]
    if missing:
        out.warn(f"GitLab has no record of the last deploy of {', '.join(missing)}: run `manual-deploy gitlab-sync` "
                 "(once GitLab is back)")
