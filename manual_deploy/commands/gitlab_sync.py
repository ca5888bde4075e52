"""`manual-deploy gitlab-sync`: give GitLab the deployment records of the deploys made without it."""

from __future__ import annotations

from typing import Optional

import typer

HELP = (
    "Record in GitLab every manual deploy it does not know yet, so the project's Environments page shows what "
    "really runs (GitLab reads deployment records; a deploy made by hand leaves none).\n\n"
    "Reads the team's records of every env it reaches (every engineer's deploys, kept in the env's cluster, plus "
    "this machine's queue), so anyone on the team can run it, from any machine. Posts one deployment per deploy, "
    "rollback and promote (env, full commit SHA, tag, success/failed), oldest first. Each record is claimed in the "
    "cluster before it is posted and GitLab's answer is stored in it, and GitLab's latest records are checked "
    "first, so nothing is posted twice, even by two engineers at once. Needs GITLAB_TOKEN (api scope, Developer "
    "role) and gitlab.url in the config. GitLab still down: exit 1, nothing lost; run it again when it is back.\n\n"
    "--skip ID --reason TEXT marks a record GitLab can never take (an image tag no git tag names), with who and "
    "why, so the newer records of its app and env stop waiting for it. IDs (or their first 8+ characters) are "
    "shown by --dry-run and `manual-deploy history`."
)


def command(
    ctx: typer.Context,
    env: Optional[str] = typer.Option(None, "--env", metavar="ENV", help="Only deploys to this environment."),
    app: Optional[str] = typer.Option(None, "--app", metavar="APP", help="Only deploys of this app."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be posted, with each record's id; post nothing."),
    skip: Optional[str] = typer.Option(None, "--skip", metavar="ID", help="Never post this record (needs --reason)."),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why the --skip record is never posted."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", metavar="PATH", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."),
) -> None:
    from manual_deploy.gitlab_skip import SkipRequest, check_options, run_skip
    from manual_deploy.gitlab_sync import SyncRequest, run_sync
    from manual_deploy.views.sync import skip_text, sync_text

    session = ctx.obj
    check_options(skip, reason, dry_run)
    if skip is not None:
        result = run_skip(session.config(), SkipRequest(skip, reason or "", env=env, app=app, kubeconfig=kubeconfig), session.out)
        session.out.result(result, skip_text(result))
        return
    result = run_sync(session.config(), SyncRequest(env=env, app=app, dry_run=dry_run, kubeconfig=kubeconfig), session.out)
    session.out.result(result, sync_text(result))
