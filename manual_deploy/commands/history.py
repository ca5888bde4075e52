"""`manual-deploy history`: the team's records of deploys, next to helm's history of the release."""

from __future__ import annotations

from typing import Optional

import typer

HELP = (
    "What was deployed, when, by whom, why and with what result (newest last): the team's records, kept in each "
    "env's cluster by every engineer's deploys, rollbacks and promotes, plus what this machine could not write there "
    "yet. Each has an ID (`gitlab-sync --skip` takes it).\n\n"
    "With --env and --app, helm's history of that release is shown too, including deploys made by GitLab. An env "
    "whose cluster cannot be read shows this machine's records of it, with a warning."
)


def command(
    ctx: typer.Context,
    env: Optional[str] = typer.Option(None, "--env", metavar="ENV", help="Only this environment."),
    app: Optional[str] = typer.Option(None, "--app", metavar="APP", help="Only this app."),
    limit: int = typer.Option(20, "--limit", "-n", metavar="N", min=1, help="Show the last N entries of each history."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", metavar="PATH", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."),
) -> None:
    from manual_deploy.history import HistoryRequest, run_history
    from manual_deploy.views.history import render_text
    from manual_deploy.views.tables import terminal_style

    session = ctx.obj
    request = HistoryRequest(env=env, app=app, limit=limit, kubeconfig=kubeconfig)
    data = run_history(session.config(), request, session.out)
    session.out.result(data, render_text(data, request, **terminal_style()))
