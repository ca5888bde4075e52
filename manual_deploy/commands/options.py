"""What the deploying commands share: their options, defined once so names and help never diverge, and
the turning of those options into an ApplyRequest (their result text is `manual_deploy.views.apply`)."""

from __future__ import annotations

import typer

KUBECONFIG = typer.Option(None, "--kubeconfig", metavar="PATH", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config).")
KUBE_CONTEXT = typer.Option(None, "--kube-context", metavar="CTX", help="Override the env's context (warns).")
TIMEOUT = typer.Option("10m", "--timeout", metavar="DURATION", help="helm --wait timeout.")
GRACE = typer.Option("60s", "--grace", metavar="DURATION", help="How long a pod may fail before we stop and roll back.")
REASON = typer.Option("", "--reason", metavar="TEXT", help="Why; recorded in the release and the team's records.")
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
BREAK_LOCK = typer.Option(False, "--break-lock", help="Take over the lock of a live run (asks; --yes skips): it stops its helm, "
                          "yours recovers the release and goes on (recorded). A dead run's lock needs no flag.")
CONFIG_REF = typer.Option(None, "--config-ref", metavar="REF", help="Deploy-config branch/tag/SHA (default: the env's).")
FORCE_REFRESH = typer.Option(False, "--force-refresh", help="Delete the Deployment first, like the Makefile (downtime).")
REPLICAS = typer.Option(None, "--replicas", metavar="N", help="Override the replica count from the config repo.")
NO_DIGEST = typer.Option(False, "--no-digest", help="Deploy repo:tag without pinning the digest.")
RECOVER = typer.Option(False, "--recover", help="Roll back a release left pending-* by plain helm first (one left by a "
                       "dead manual-deploy run is recovered without it).")
POST_CHECK = typer.Option(
    None, "--post-check", metavar='"CMD ARGS"', help="Run after a verified deploy (no shell; MD_ENV, MD_APP, MD_IMAGE, MD_NAMESPACE set)."
)
ROLLBACK_ON_CHECK_FAILURE = typer.Option(False, "--rollback-on-check-failure", help="Roll back when the post-check fails.")


def apply_request(*, timeout: str, grace: str, post_check: str | None, **fields):
    """An ApplyRequest from raw option values: durations and the post-check command parsed once, here."""
    from manual_deploy.apply_plan import ApplyRequest
    from manual_deploy.durations import parse_duration
    from manual_deploy.postcheck import parse_post_check

    return ApplyRequest(
        timeout_s=parse_duration(timeout, option="--timeout"),
        grace_s=parse_duration(grace, option="--grace"),
        post_check=tuple(parse_post_check(post_check)) if post_check is not None else None,
        **fields,
    )

