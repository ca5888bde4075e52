"""`manual-deploy status`: what runs where, and where the cluster drifted from helm or the config repo."""

from __future__ import annotations

from typing import List, Optional

import typer

HELP = (
    "What runs where — GitLab's Environments page, read from helm and the cluster.\n\n"
    "Per app and env: helm revision and status, image tag and digest, ready/desired replicas, when, by whom "
    "and why it was deployed, and the deploy-config SHA. Drift is marked ⚠: the Deployment runs another image "
    "than helm deployed (kubectl set image), or other replicas than the config repo says. A deploy running now "
    "(⟳ who, why, phase, how long, heartbeat) or one that died holding its lock (✗) is shown under the table. Read-only. "
    "Exit 0 even with drift; 3 if an env's kube context fails its check; 1 if a cluster cannot be read."
)


def command(
    ctx: typer.Context,
    env: List[str] = typer.Option(..., "--env", metavar="ENV", help="Environment(s); repeat to compare several side by side."),
    app: Optional[List[str]] = typer.Option(None, "--app", metavar="APP", help="App(s) to show; repeat. Default: every configured app."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", metavar="PATH", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."),
) -> int:
    from manual_deploy.errors import FAILED, OK
    from manual_deploy.status import run_status
    from manual_deploy.status_report import StatusRequest
    from manual_deploy.views.status import render_text, report_problems
    from manual_deploy.views.tables import terminal_style

    session = ctx.obj
    report = run_status(session.config(), StatusRequest(envs=tuple(env), apps=tuple(app or ()), kubeconfig=kubeconfig), session.out)
    report_problems(report, session.out)
    session.out.result(report.as_dict(), render_text(report, **terminal_style()))
    return FAILED if report.failed else OK
