"""`manual-deploy gitlab-sync`: give GitLab the deployment records of the deploys made without it."""

from __future__ import annotations

from typing import Optional

import typer

HELP = (
    "Record in GitLab every manual deploy it does not know yet, so the project's Environments page shows what "
    "really runs (GitLab reads deployment records; a deploy made by hand leaves none).\n\n"
    "Reads this machine's audit log and posts one deployment per deploy, rollback and promote (env, full commit "
    "SHA, tag, success/failed), oldest first. Safe to run again: what was posted is remembered and GitLab's latest "
    "records are checked first, so nothing is posted twice. Needs GITLAB_TOKEN (api scope, Developer role) and "
    "gitlab.url in the config. GitLab still down: exit 1, nothing lost; run it again when it is back."
)


def command(
    ctx: typer.Context,
    env: Optional[str] = typer.Option(None, "--env", metavar="ENV", help="Only deploys to this environment."),
    app: Optional[str] = typer.Option(None, "--app", metavar="APP", help="Only deploys of this app."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be posted; post nothing."),
) -> None:
    from manual_deploy.gitlab_sync import SyncRequest, run_sync
    from manual_deploy.views.sync import sync_text

    session = ctx.obj
    result = run_sync(session.config(), SyncRequest(env=env, app=app, dry_run=dry_run), session.out)
    session.out.result(result, sync_text(result))
