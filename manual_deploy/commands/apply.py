"""`manual-deploy apply`: the verified, locked, atomic helm deploy of one env."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from manual_deploy.commands import options as O

HELP = (
    "Deploy the image to an environment with helm, the way GitLab's deploy job does, and prove it is live.\n\n"
    "Phases: target (the env's kube context, checked) → image (exists, pinned by digest) → config (replicas and "
    "values from ingest-kube-deployment, never sourcing its bash) → plan → confirm (prod: type the env name, or "
    "--yes) → lock (a Lease per app, all or none; with --yes taken during the plan) → upgrade (helm upgrade --install "
    "--wait, rolled back on failure) → verify (every resource of the release: a claim that cannot bind, a pod that "
    "cannot be scheduled, pull, start or get ready, a missing Secret key, a volume that cannot attach … past --grace "
    "stops helm and rolls back, naming the resource and why) → record "
    "(the team's record in the env's namespace, which every engineer's `history` reads, and this machine's audit log; "
    "and GitLab's deployment record when GitLab answers, else anyone runs `manual-deploy gitlab-sync` later). "
    "Image and app default to what `tag` and `wait-image` recorded in this checkout."
)


def command(
    ctx: typer.Context,
    env: str = typer.Option(..., "--env", metavar="ENV", help="Environment to deploy to (dev, staging, prod)."),
    app: Optional[List[str]] = typer.Option(None, "--app", metavar="APP", help="App(s); repeat for several. Default: recorded."),
    image: Optional[str] = typer.Option(None, "--image", metavar="REF", help="Image repo:tag[@digest] (one app)."),
    tag: Optional[str] = typer.Option(None, "--tag", metavar="TAG", help="Image tag of the app's repository."),
    config_ref: Optional[str] = O.CONFIG_REF,
    kubeconfig: Optional[str] = O.KUBECONFIG,
    kube_context: Optional[str] = O.KUBE_CONTEXT,
    timeout: str = O.TIMEOUT,
    grace: str = O.GRACE,
    reason: str = O.REASON,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and a manifest diff; change nothing."),
    yes: bool = O.YES,
    break_lock: bool = O.BREAK_LOCK,
    force_refresh: bool = O.FORCE_REFRESH,
    replicas: Optional[int] = O.REPLICAS,
    no_digest: bool = O.NO_DIGEST,
    recover: bool = O.RECOVER,
    post_check: Optional[str] = O.POST_CHECK,
    rollback_on_check_failure: bool = O.ROLLBACK_ON_CHECK_FAILURE,
    repo: Path = typer.Option(Path("."), "--repo", metavar="PATH", help="App checkout holding the recorded state."),
) -> None:
    from manual_deploy.apply import run_apply
    from manual_deploy.errors import UsageError
    from manual_deploy.views.apply import result_text

    if image and tag:
        raise UsageError(f"--image {image} and --tag {tag} both name the image: pass one, not both",
                         hint="pass --image REF (repo:tag[@digest]) or --tag TAG (a tag of the app's repository)")
    session = ctx.obj
    request = O.apply_request(
        env=env, apps=tuple(app or ()), image=image, tag=tag, config_ref=config_ref, kubeconfig=kubeconfig,
        kube_context=kube_context, timeout=timeout, grace=grace, reason=reason, dry_run=dry_run, yes=yes,
        break_lock=break_lock, force_refresh=force_refresh, replicas=replicas, no_digest=no_digest,
        recover=recover, repo=str(repo), post_check=post_check, rollback_on_check_failure=rollback_on_check_failure,
    )
    summary = run_apply(session.config(), request, session.out)
    session.out.result(summary, result_text(summary))
