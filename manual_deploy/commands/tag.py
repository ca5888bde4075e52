"""`manual-deploy tag`: tag the commit to ship and push just that tag."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

HELP = (
    "Tag a commit of the app checkout and push only that tag, so quay.io's trigger builds it.\n\n"
    "The default name is the commit's short SHA (what the `git release` alias makes); with --env it is "
    "GitLab's release name <env>-<sha8>-<dd-mm-YYYY>.<epoch> (UTC). The commit must be on the env's source "
    "branch (without --env: on some branch of the remote). A suitable tag already at the commit is reused. "
    "Prints the tag name on stdout and records it for `wait-image` and `apply`."
)


def command(
    ctx: typer.Context,
    repo: Path = typer.Option(Path("."), "--repo", metavar="PATH", help="The app's git checkout."),
    commit: str = typer.Option("HEAD", "--commit", metavar="REF", help="Commit to tag (SHA, branch, tag…)."),
    remote: str = typer.Option("origin", "--remote", metavar="NAME", help="Remote to fetch from and push to."),
    env: Optional[str] = typer.Option(
        None, "--env", metavar="ENV", help="Target env: require its source branch, use the release tag format."
    ),
    app: Optional[str] = typer.Option(None, "--app", metavar="APP", help="App name (default: from the remote URL)."),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why; recorded in the tag message."),
    allow_unmerged: bool = typer.Option(
        False, "--allow-unmerged", help="Tag a commit that is not on the required branch (loud warning, recorded)."
    ),
) -> None:
    from manual_deploy.tag import TagRequest, tag_commit

    session = ctx.obj
    request = TagRequest(
        repo=repo, commit=commit, remote=remote, env=env, app=app, reason=reason, allow_unmerged=allow_unmerged
    )
    result = tag_commit(session.config(), request, session.out)
    session.out.result(result.as_dict(), result.tag)
