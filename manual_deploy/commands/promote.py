"""`manual-deploy promote`: deploy to one env exactly the image that runs in another."""

from __future__ import annotations

from typing import Optional

import typer

from manual_deploy.commands import options as O

HELP = (
    "Deploy to --to exactly the image (by digest) that runs healthy in --from, with --to's own replicas "
    "and values, through the same path as apply.\n\n"
    "Refuses (exit 3) unless the source release is deployed and rolled out. --retag also does what GitLab's "
    "Release job did: adds the tag <env>-<sha8>-<dd-mm-YYYY>.<epoch> to that same manifest (needs "
    "QUAY_USERNAME/QUAY_PASSWORD with push rights) and deploys by that tag + digest."
)


def command(
    ctx: typer.Context,
    source: str = typer.Option(..., "--from", metavar="ENV", help="Environment whose running image to take."),
    target: str = typer.Option(..., "--to", metavar="ENV", help="Environment to deploy it to."),
    app: str = typer.Option(..., "--app", metavar="APP", help="App to promote."),
    yes: bool = O.YES,
    retag: bool = typer.Option(False, "--retag", help="Also write GitLab's release tag for --to in the registry."),
    reason: str = O.REASON,
    kubeconfig: Optional[str] = O.KUBECONFIG,
    timeout: str = O.TIMEOUT,
    grace: str = O.GRACE,
) -> None:
    from manual_deploy.durations import parse_duration
    from manual_deploy.promote import PromoteRequest, run_promote
    from manual_deploy.views.apply import result_text

    session = ctx.obj
    request = PromoteRequest(
        source=source, target=target, app=app, yes=yes, retag=retag, reason=reason, kubeconfig=kubeconfig,
        timeout_s=parse_duration(timeout, option="--timeout"), grace_s=parse_duration(grace, option="--grace"),
    )
    summary = run_promote(session.config(), request, session.out)
    session.out.result(summary, result_text(summary))
