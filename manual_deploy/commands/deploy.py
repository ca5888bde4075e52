"""`manual-deploy deploy`: tag → wait-image → apply in one re-runnable command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from manual_deploy.commands import options as O

HELP = (
    "The whole chain in one command, run in the app checkout: tag the commit (release format for --env, "
    "on the env's source branch), wait for quay.io's image, apply it to --env.\n\n"
    "Each finished step is recorded; re-running after a failure resumes at the first unfinished step and "
    "says so (a new commit or --restart starts over). Takes the flags of the three steps."
)


def command(
    ctx: typer.Context,
    env: str = typer.Option(..., "--env", metavar="ENV", help="Environment to deploy to."),
    app: Optional[str] = typer.Option(None, "--app", metavar="APP", help="App (default: from the remote URL)."),
    repo: Path = typer.Option(Path("."), "--repo", metavar="PATH", help="The app's git checkout."),
    commit: str = typer.Option("HEAD", "--commit", metavar="REF", help="Commit to ship."),
    remote: str = typer.Option("origin", "--remote", metavar="NAME", help="Git remote."),
    reason: str = O.REASON,
    allow_unmerged: bool = typer.Option(False, "--allow-unmerged", help="Tag a commit not on the env's source branch (recorded)."),
    image_timeout: str = typer.Option("45m", "--image-timeout", metavar="DURATION", help="wait-image --timeout."),
    no_build_timeout: str = typer.Option("10m", "--no-build-timeout", metavar="DURATION", help="wait-image --no-build-timeout."),
    start_build: bool = typer.Option(
        False, "--start-build", help="wait-image --start-build: start quay's build trigger if it did not fire (QUAY_TOKEN with repo:admin)."
    ),
    restart: bool = typer.Option(False, "--restart", help="Ignore recorded progress and start at tag."),
    config_ref: Optional[str] = O.CONFIG_REF,
    kubeconfig: Optional[str] = O.KUBECONFIG,
    kube_context: Optional[str] = O.KUBE_CONTEXT,
    timeout: str = O.TIMEOUT,
    grace: str = O.GRACE,
    yes: bool = O.YES,
    break_lock: bool = O.BREAK_LOCK,
    force_refresh: bool = O.FORCE_REFRESH,
    replicas: Optional[int] = O.REPLICAS,
    no_digest: bool = O.NO_DIGEST,
    recover: bool = O.RECOVER,
    post_check: Optional[str] = O.POST_CHECK,
    rollback_on_check_failure: bool = O.ROLLBACK_ON_CHECK_FAILURE,
) -> None:
    from manual_deploy.durations import parse_duration
    from manual_deploy.deploy import DeployRequest, run_deploy
    from manual_deploy.views.apply import result_text

    session = ctx.obj
    apply_request = O.apply_request(
        env=env, config_ref=config_ref, kubeconfig=kubeconfig, kube_context=kube_context, timeout=timeout,
        grace=grace, reason=reason, yes=yes, break_lock=break_lock, force_refresh=force_refresh, replicas=replicas,
        no_digest=no_digest, recover=recover, post_check=post_check, rollback_on_check_failure=rollback_on_check_failure,
    )
    request = DeployRequest(
        env=env, repo=str(repo), commit=commit, remote=remote, app=app, reason=reason, allow_unmerged=allow_unmerged,
        image_timeout_s=parse_duration(image_timeout, option="--image-timeout"),
        no_build_timeout_s=parse_duration(no_build_timeout, option="--no-build-timeout"), start_build=start_build, restart=restart,
        apply=apply_request,
    )
    summary = run_deploy(session.config(), request, session.out)
    session.out.result(summary, result_text(summary))
