"""`manual-deploy apply`: the verified, locked, atomic helm deploy of one env."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

HELP = (
    "Deploy the image to an environment with helm, the way GitLab's deploy job does, and prove it is live.\n\n"
    "Phases: target (the env's kube context, checked) → image (exists, pinned by digest) → config (replicas and "
    "values from ingest-kube-deployment, never sourcing its bash) → plan → confirm (prod: type the env name, or "
    "--yes) → lock (a Lease per app) → upgrade (helm upgrade --install --wait, rolled back on failure) → verify "
    "(rollout + pods; a pod in ImagePullBackOff/CrashLoopBackOff past --grace stops and rolls back) → record "
    "(audit log). Image and app default to what `tag` and `wait-image` recorded in this checkout."
)


def command(
    ctx: typer.Context,
    env: str = typer.Option(..., "--env", metavar="ENV", help="Environment to deploy to (dev, staging, prod)."),
    app: Optional[List[str]] = typer.Option(None, "--app", metavar="APP", help="App(s); repeat for several. Default: recorded."),
    image: Optional[str] = typer.Option(None, "--image", metavar="REF", help="Image repo:tag[@digest] (one app)."),
    tag: Optional[str] = typer.Option(None, "--tag", metavar="TAG", help="Image tag of the app's repository."),
    config_ref: Optional[str] = typer.Option(None, "--config-ref", metavar="REF", help="Deploy-config branch/tag/SHA (default: the env's)."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", metavar="PATH", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."),
    kube_context: Optional[str] = typer.Option(None, "--kube-context", metavar="CTX", help="Override the env's context (warns)."),
    timeout: str = typer.Option("10m", "--timeout", metavar="DURATION", help="helm --wait timeout."),
    grace: str = typer.Option("60s", "--grace", metavar="DURATION", help="How long a pod may fail before we stop and roll back."),
    reason: str = typer.Option("", "--reason", metavar="TEXT", help="Why; recorded in the release and the audit log."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and a manifest diff; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    break_lock: bool = typer.Option(False, "--break-lock", help="Take over a deploy lock held by someone else (recorded)."),
    force_refresh: bool = typer.Option(False, "--force-refresh", help="Delete the Deployment first, like the Makefile (downtime)."),
    replicas: Optional[int] = typer.Option(None, "--replicas", metavar="N", help="Override the replica count from the config repo."),
    no_digest: bool = typer.Option(False, "--no-digest", help="Deploy repo:tag without pinning the digest."),
    recover: bool = typer.Option(False, "--recover", help="Roll back a release stuck in pending-* first."),
    post_check: Optional[str] = typer.Option(
        None, "--post-check", metavar='"CMD ARGS"', help="Run after a verified deploy (no shell; MD_ENV, MD_APP, MD_IMAGE, MD_NAMESPACE set)."
    ),
    rollback_on_check_failure: bool = typer.Option(False, "--rollback-on-check-failure", help="Roll back when the post-check fails."),
    repo: Path = typer.Option(Path("."), "--repo", metavar="PATH", help="App checkout holding the recorded state."),
) -> None:
    from manual_deploy.deploy import ApplyRequest, run_apply
    from manual_deploy.durations import parse_duration
    from manual_deploy.errors import UsageError
    from manual_deploy.postcheck import parse_post_check

    if image and tag:
        raise UsageError("pass --image or --tag, not both")
    session = ctx.obj
    request = ApplyRequest(
        env=env, apps=tuple(app or ()), image=image, tag=tag, config_ref=config_ref, kubeconfig=kubeconfig,
        kube_context=kube_context, timeout_s=parse_duration(timeout, option="--timeout"),
        grace_s=parse_duration(grace, option="--grace"), reason=reason, dry_run=dry_run, yes=yes,
        break_lock=break_lock, force_refresh=force_refresh, replicas=replicas, no_digest=no_digest,
        recover=recover, repo=str(repo),
        post_check=tuple(parse_post_check(post_check)) if post_check is not None else None,
        rollback_on_check_failure=rollback_on_check_failure,
    )
    summary = run_apply(session.config(), request, session.out)
    session.out.result(summary, _text(summary))


def _text(summary: dict) -> str:
    if summary.get("dry_run"):
        return "\n".join(f"{r['plan']}\n{r['diff'] or '(no manifest changes)'}" for r in summary["results"])
    return "\n".join(
        f"{r['app']}\t{summary['env']}\t{r['result']}\trevision {r.get('new_revision')}\t{r.get('image')}" for r in summary["results"]
    )
