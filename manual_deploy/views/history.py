"""`history` as text: the team's records as a table, then helm's history of the release when it was read."""

from __future__ import annotations

from typing import Any

from manual_deploy import paths
from manual_deploy.history import HistoryRequest
from manual_deploy.images import ImageRef
from manual_deploy.release.description import who
from manual_deploy.timestamps import parse_time
from manual_deploy.views.tables import render


def _when(text: str | None) -> str:
    stamp = parse_time(text)
    return stamp.strftime("%Y-%m-%d %H:%MZ") if stamp else (text or "-")


def _revisions(record: dict) -> str:
    old, new = record.get("old_revision"), record.get("new_revision")
    return f"{old if old is not None else '-'} → {new if new is not None else '-'}"


_RESULT_STYLE = {"deployed": "green", "failed": "bold red", "interrupted": "bold red", "unchanged": "dim", "running": "yellow"}
ID_SHOWN = 12  # enough to be unique; `gitlab-sync --skip` takes it


def _result(record: dict) -> str:
    """The result, and where the record is when it is not in the cluster yet."""
    result = str(record.get("result", "?"))
    return f"{result} (queued here)" if record.get("queued") else result


def _scope(request: HistoryRequest) -> str:
    parts = [p for p in (request.env, request.app) if p]
    return "/".join(parts) if parts else "all envs and apps"


def records_table(records: list[dict], request: HistoryRequest):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    title = f"the team's records (each env's cluster, and this machine's queue) · {_scope(request)} · last {len(records)}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("WHEN", "ENV", "APP", "RESULT", "REVISION", "IMAGE", "BY", "REASON", "ID", "MESSAGE"):
        table.add_column(name, overflow="fold", max_width=60 if name == "MESSAGE" else (40 if name == "REASON" else None))
    for record in records:
        result = str(record.get("result", "?"))
        table.add_row(
            _when(record.get("at")),
            str(record.get("env", "-")),
            str(record.get("app", "-")),
            Text(_result(record), style=_RESULT_STYLE.get(result, "")),
            _revisions(record),
            ImageRef.parse(record.get("image")).short(),
            f"{record.get('user', '?')}@{record.get('host', '?')}",
            record.get("reason") or "-",
            str(record.get("id", "-"))[:ID_SHOWN],
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
    """The records table (or a friendly line when there are none), then helm's table when it was read."""
    parts: list[Any] = []
    if data["records"]:
        parts.append(records_table(data["records"], request))
    else:
        scope = "" if not (request.env or request.app) else f" for {_scope(request)}"
        parts.append(f"no deploys recorded{scope} yet: neither in the cluster nor queued on this machine ({paths.audit_log()})")
    if data["helm"] is not None:
        if data["helm"]:
            parts.append(helm_table(data["helm"], request))
        else:
            parts.append(f"helm has no release {request.app} in {request.env}")
    return render(*parts, width=width, color=color)
