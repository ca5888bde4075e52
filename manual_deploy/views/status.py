"""`status` as text: one table (every detail of one env, or a column per env), the deploys under way, and the problems on stderr."""

from __future__ import annotations

from manual_deploy.console import Output
from manual_deploy.images import ImageRef
from manual_deploy.release.description import who
from manual_deploy.status_report import NOT_DEPLOYED, AppStatus, EnvStatus, StatusReport
from manual_deploy.timestamps import parse_time
from manual_deploy.views.tables import age, render, when


def render_text(report: StatusReport, *, width: int = 200, color: bool = False) -> str:
    """One table: every detail for one env; a compact column per env when several are compared.
    Under it, one line per app a deploy is running on or died on."""
    table = _single_env_table(report.envs[0]) if len(report.envs) == 1 else _multi_env_table(report.envs)
    text = render(table, width=width, color=color)
    locks = _lock_lines(report)
    return f"{text.rstrip(chr(10))}\n\n{render(*locks, width=width, color=color, soft_wrap=True)}" if locks else text


def report_problems(report: StatusReport, out: Output) -> None:
    """Warnings, drift and unreadable clusters on stderr, then how many drifts; the table itself stays on stdout."""
    for env in report.envs:
        for warning in env.warnings:
            out.warn(f"{env.env}: {warning}")
        if env.error:
            out.error(f"{env.env}: {env.error}", env.hint)
        for row in env.apps.values():
            if row.error:
                out.error(f"{env.env}/{row.app}: {row.error}")
            for drift in row.drift:
                out.warn(f"⚠ {drift.message}")
                out.info(f"  next: {drift.hint}")
    if report.mismatch_count:
        out.warn(f"{report.mismatch_count} drift(s) found: the cluster is not what helm / the config repo says")


def _status_style(row: AppStatus) -> str:
    if row.error or row.status.startswith(("failed", "pending")) or row.status == "unknown":
        return "bold red"
    if not row.deployed:
        return "dim"
    return "green" if row.status == "deployed" else "yellow"


def _lock_mark(row: AppStatus) -> tuple[str, str]:
    """⟳ a deploy is running, ✗ one died holding the lock: ties the row to its line under the table."""
    if row.lock is None:
        return "", ""
    return ("⟳ ", "yellow") if row.lock.running else ("✗ ", "bold red")


def _lock_lines(report: StatusReport) -> list:
    return [_lock_line(env, row) for env in report.envs for row in env.apps.values() if row.lock is not None]


def _lock_line(env: EnvStatus, row: AppStatus):
    """`⟳ prod/app: being deployed by …: old → new`, or `✗ prod/app: …'s apply stopped answering …`: a dead run's
    lock and pending release are taken over by the next deploy (see apply._check_pending), so it says so."""
    from rich.text import Text

    lock, where = row.lock, f"{env.env}/{row.app}"
    if lock.running:
        image = f": {lock.holder.image}" if lock.holder.image else ""
        return Text(f"⟳ {where}: being deployed by {lock.holder.describe(lock.read_at)}{image}", style="yellow")
    stuck = f"; release {row.release} is {row.status} (revision {row.revision})" if row.status.startswith("pending") else ""
    return Text(f"✗ {where}: {lock.holder.obituary(lock.read_at)}{stuck}; the next deploy recovers it (no flag needed)",
                style="bold red")


def _ready(row: AppStatus) -> str:
    if row.desired_replicas is None:
        return "-"
    return f"{row.ready_replicas}/{row.desired_replicas}"


def _problem_cell(row: AppStatus) -> str:
    """The row's drift, or why it could not be read."""
    if row.error:
        return f"✗ {row.error}"
    return "\n".join(f"⚠ {d.summary}" for d in row.drift) or ""


def _config_label(env: EnvStatus) -> str:
    """Which deploy-config commit the replicas were compared with: `branch@sha8`, or that it was not read."""
    return f"{env.config_branch}@{env.config_sha[:8]}" if env.config_sha else f"{env.config_branch} (not read)"


def _title(env: EnvStatus) -> str:
    return f"{env.env} · context {env.context} · namespace {env.namespace} · config {_config_label(env)}"


def _single_env_table(env: EnvStatus):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_title(env), title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("APP", "REV", "STATUS", "TAG", "DIGEST", "READY", "DEPLOYED", "BY", "REASON", "CONFIG", "GITLAB", "DRIFT"):
        table.add_column(name, overflow="fold", max_width=48 if name in ("REASON", "DRIFT") else None)
    for row in env.apps.values():
        drifted = bool(row.drift or row.error)
        stamp = parse_time(row.deployed_at)
        by = who(row.deployed_by) if row.deployed_by else ("-" if not row.description else "(not manual-deploy)")
        reason = row.reason or ("" if row.deployed_by else (row.description or ""))
        ready_style = "yellow" if row.desired_replicas is not None and row.ready_replicas != row.desired_replicas else ""
        table.add_row(
            Text(("⚠ " if drifted else "") + row.app, style="bold yellow" if drifted else ""),
            str(row.revision) if row.revision is not None else "-",
            Text.assemble(_lock_mark(row), (row.status, _status_style(row))),
            row.tag or "-",
            row.digest[:19] if row.digest else "-",
            Text(_ready(row), style=ready_style),
            when(stamp),
            by,
            reason,
            row.config_sha or "-",
            Text(row.gitlab or "-", style="yellow" if row.gitlab == "not recorded" else ""),
            Text(_problem_cell(row), style="bold yellow" if drifted else ""),
        )
    return table


def _multi_env_cell(env: EnvStatus, row: AppStatus | None):
    from rich.text import Text

    if env.error:
        return Text("✗ cluster not read", style="bold red")
    if row is None:
        return Text("-")
    text = Text.assemble(_lock_mark(row))
    if not row.deployed:
        text.append(row.status if row.error else NOT_DEPLOYED, style=_status_style(row))
    else:
        text.append(f"r{row.revision} ", style="bold")
        text.append(row.status, style=_status_style(row))
        text.append(f" · {_ready(row)}\n{ImageRef.parse(row.image).short()}\n{age(parse_time(row.deployed_at))}")
        if row.deployed_by:
            text.append(f" · {who(row.deployed_by)}")
        if row.gitlab == "not recorded":
            text.append("\nGitLab: not recorded", style="yellow")
    drift = _problem_cell(row)
    if drift:
        text.append(f"\n{drift}", style="bold yellow")
    return text


def _multi_env_table(envs: list[EnvStatus]):
    from rich import box
    from rich.table import Table

    names = list(dict.fromkeys(name for env in envs for name in env.apps))
    table = Table(show_lines=True, box=box.SQUARE)
    table.add_column("APP", style="bold")
    for env in envs:
        table.add_column(f"{env.env} ({env.context})\nconfig {_config_label(env)}", overflow="fold", max_width=44)
    for name in names:
        table.add_row(name, *(_multi_env_cell(env, env.apps.get(name)) for env in envs))
    return table
