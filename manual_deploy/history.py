"""`history`: what was deployed, by whom and why — this machine's audit log next to helm's own history.

The audit log is local, so it also holds what never reached helm (refused locks, failed images) and
the timings; helm's history is the cluster's truth, including deploys made from other machines or by
GitLab. Both are returned (views/history.py draws them); the cluster part is best-effort, as the log is
what you have when it is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from manual_deploy import audit
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


def audit_records(env: str | None, app: str | None, limit: int) -> list[dict[str, Any]]:
    """The last `limit` records of the audit log for env/app, oldest first (newest at the bottom)."""
    records = [r for r in audit.read() if (env is None or r.get("env") == env) and (app is None or r.get("app") == app)]
    return records[-limit:] if limit else records


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
    """{"audit": [...], "helm": [...] or None}: helm only with --env and --app, None when it cannot be read."""
    if request.limit < 1:
        raise UsageError(f"--limit must be 1 or more, got {request.limit}")
    if request.env:
        config.environment(request.env)
    if request.app:
        config.app(request.app)
    records = audit_records(request.env, request.app, request.limit)
    helm = None
    if request.env and request.app:
        helm = helm_revisions(config, request, out)
    elif request.env or request.app:
        out.info("(pass both --env and --app to see helm's history of the release too)")
    return {"audit": records, "helm": helm}
