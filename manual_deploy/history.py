"""`history`: what was deployed, by whom and why — the team's records next to helm's own history.

The team's records (deploy_records.py) are in each env's cluster, written by every engineer's runs,
with what never reached helm (refused locks, failed images), the timings and the record ids
`gitlab-sync --skip` takes; this machine's queue adds what it could not write there yet. Helm's history
is the release's own truth, including deploys made by GitLab. Both are returned (views/history.py draws
them); a cluster that cannot be read leaves its env's local queue, with a warning.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from manual_deploy import deploy_records, record_queue
from manual_deploy.config import Config
from manual_deploy.console import Output
from manual_deploy.errors import ManualDeployError, UsageError
from manual_deploy.helm import driver_for, helm_error
from manual_deploy.kube import resolve_target
from manual_deploy.release import description
from manual_deploy.status import HELM_READ_TIMEOUT_S
from manual_deploy.timestamps import iso, parse_time


@dataclass(frozen=True)
class HistoryRequest:
    env: str | None = None
    app: str | None = None
    limit: int = 20
    kubeconfig: str | None = None


def team_records(config: Config, request: HistoryRequest, out: Output) -> list[dict[str, Any]]:
    """The last `limit` records of the env (every configured env when none is given) and app, oldest first:
    each env's cluster read at the same time, plus what waits in this machine's queue."""
    envs = [request.env] if request.env else list(config.environments)
    with ThreadPoolExecutor(max_workers=len(envs)) as pool:
        found = [r for rows in pool.map(lambda env: _env_records(config, env, request.kubeconfig, out), envs) for r in rows]
    found = [r for r in found if request.app is None or r.get("app") == request.app]
    return deploy_records.oldest_first(found)[-request.limit:]


def _env_records(config: Config, env: str, kubeconfig: str | None, out: Output) -> list[dict[str, Any]]:
    team, why = record_queue.reach(config, env, kubeconfig)
    if why is not None:
        out.warn(f"{env}: the team's records not read ({why}); showing this machine's records of it only "
                 f"(`manual-deploy doctor --env {env}` says what is missing)")
    records, problems = record_queue.team_records(team.kube, team.namespace, env)
    for line in problems:
        out.warn(f"{env}: {line}")
    return records


def helm_revisions(config: Config, request: HistoryRequest, out: Output) -> list[dict[str, Any]] | None:
    """helm history of the release, newest last; None (with a warning) when the cluster cannot be read."""
    app = config.app(request.app)
    try:
        target = resolve_target(config, request.env, kubeconfig=request.kubeconfig)
        helm = driver_for(config, target, kubeconfig=request.kubeconfig, timeout_s=HELM_READ_TIMEOUT_S)
        revisions = asyncio.run(asyncio.wait_for(helm.history(app.release, target.namespace), HELM_READ_TIMEOUT_S))
    except ManualDeployError as exc:
        out.warn(f"helm history not shown: {exc.message}")
        return None
    except asyncio.TimeoutError:
        out.warn(f"helm history not shown: the cluster did not answer within {HELM_READ_TIMEOUT_S:.0f}s")
        return None
    except Exception as exc:  # pyhelm3: cluster unreachable, no access to the release secrets
        out.warn(f"helm history not shown: {helm_error(exc, f'cannot read release {app.release} in {request.env}').message}")
        return None
    return [_revision_dict(r) for r in revisions][-request.limit:]


def _revision_dict(revision) -> dict[str, Any]:
    made_by = description.parse(revision.description)
    return {
        "revision": revision.number,
        "status": revision.status,
        "updated": iso(parse_time(revision.updated)) or revision.updated,
        "description": revision.description,
        "deployed_by": made_by.by if made_by else None,
        "reason": made_by.reason if made_by else None,
        "image": made_by.image if made_by else None,
        "config_sha": made_by.config_sha if made_by else None,
    }


def run_history(config: Config, request: HistoryRequest, out: Output) -> dict[str, Any]:
    """{"records": [...], "helm": [...] or None}: helm only with --env and --app, None when it cannot be read."""
    if request.limit < 1:
        raise UsageError(f"--limit must be 1 or more, got {request.limit}")
    if request.env:
        config.environment(request.env)
    if request.app:
        config.app(request.app)
    records = team_records(config, request, out)
    helm = None
    if request.env and request.app:
        helm = helm_revisions(config, request, out)
    elif request.env or request.app:
        out.info("(pass both --env and --app to see helm's history of the release too)")
    return {"records": records, "helm": helm}
