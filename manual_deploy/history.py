"""`history`: what was deployed, by whom and why — this machine's audit log next to helm's own history.

The audit log is local, so it also holds what never reached helm (refused locks, failed images) and
the timings; helm's history is the cluster's truth, including deploys made from other machines or by
GitLab. Both are shown; the cluster part is best-effort, as the log is what you have when it is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from manual_deploy import audit, paths
from manual_deploy.config import Config
from manual_deploy.console import Output
from manual_deploy.errors import ManualDeployError, UsageError
from manual_deploy.helm import HelmDriver, find_helm, helm_error
from manual_deploy.kube import resolve_target
from manual_deploy.images import ImageRef
from manual_deploy.status import HELM_READ_TIMEOUT_S, parse_description, render, who
from manual_deploy.timestamps import parse_time


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
        helm = HelmDriver(
            find_helm(config.helm.executable), kubeconfig=request.kubeconfig, context=target.context, timeout_s=HELM_READ_TIMEOUT_S
        )
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
    made_by = parse_description(revision.description)
    stamp = parse_time(revision.updated)
    return {
        "revision": revision.number,
        "status": revision.status,
        "updated": stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else revision.updated,
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


# --- text ----------------------------------------------------------------------------------------------


def _when(text: str | None) -> str:
    stamp = parse_time(text)
    return stamp.strftime("%Y-%m-%d %H:%MZ") if stamp else (text or "-")


def _revisions(record: dict) -> str:
    old, new = record.get("old_revision"), record.get("new_revision")
    return f"{old if old is not None else '-'} → {new if new is not None else '-'}"


_RESULT_STYLE = {"deployed": "green", "failed": "bold red", "interrupted": "bold red", "unchanged": "dim"}


def _scope(request: HistoryRequest) -> str:
    parts = [p for p in (request.env, request.app) if p]
    return "/".join(parts) if parts else "all envs and apps"


def audit_table(records: list[dict], request: HistoryRequest):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    title = f"audit log of this machine ({paths.audit_log()}) · {_scope(request)} · last {len(records)}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("WHEN", "ENV", "APP", "RESULT", "REVISION", "IMAGE", "BY", "REASON", "MESSAGE"):
        table.add_column(name, overflow="fold", max_width=60 if name == "MESSAGE" else (40 if name == "REASON" else None))
    for record in records:
        result = str(record.get("result", "?"))
        table.add_row(
            _when(record.get("at")),
            str(record.get("env", "-")),
            str(record.get("app", "-")),
            Text(result, style=_RESULT_STYLE.get(result, "")),
            _revisions(record),
            ImageRef.parse(record.get("image")).short(),
            f"{record.get('user', '?')}@{record.get('host', '?')}",
            record.get("reason") or "-",
            "" if result == "deployed" else (record.get("message") or ""),  # a success's message only repeats the image
        )
    return table


def helm_table(revisions: list[dict], request: HistoryRequest):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"helm history of {request.app} in {request.env} (the cluster's record)", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("REVISION", "UPDATED", "STATUS", "IMAGE", "BY", "REASON / DESCRIPTION", "CONFIG"):
        table.add_column(name, overflow="fold", max_width=60 if name.startswith("REASON") else None)
    for entry in revisions:
        status = entry["status"]
        style = "green" if status == "deployed" else ("bold red" if status.startswith(("failed", "pending")) else "dim")
        table.add_row(
            str(entry["revision"]),
            _when(entry["updated"]),
            Text(status, style=style),
            ImageRef.parse(entry["image"]).short(),
            who(entry["deployed_by"]) if entry["deployed_by"] else "-",
            (entry["reason"] or "-") if entry["deployed_by"] else (entry["description"] or "-"),
            entry["config_sha"] or "-",
        )
    return table


def render_text(data: dict[str, Any], request: HistoryRequest, *, width: int = 200, color: bool = False) -> str:
    """The audit table (or a friendly line when it is empty), then helm's table when it was read."""
    parts: list[Any] = []
    if data["audit"]:
        parts.append(audit_table(data["audit"], request))
    else:
        scope = "" if not (request.env or request.app) else f" for {_scope(request)}"
        parts.append(f"no deploys recorded{scope} in {paths.audit_log()} yet (it holds what `manual-deploy apply` did on this machine)")
    if data["helm"] is not None:
        if data["helm"]:
            parts.append(helm_table(data["helm"], request))
        else:
            parts.append(f"helm has no release {request.app} in {request.env}")
    return render(*parts, width=width, color=color)
