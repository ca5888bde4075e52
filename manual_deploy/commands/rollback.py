"""`manual-deploy rollback`: back to the previous good helm revision, verified like a deploy."""

from __future__ import annotations

from typing import Optional

import typer

from manual_deploy.commands import options as O

HELP = (
    "Roll an app back to the previous successfully deployed helm revision (or --revision N).\n\n"
    "Shows what it goes back to (image, when, by whom), then the same guarded sequence as apply: confirmation "
    "(prod), lock, team message, helm rollback under the watch of every resource, the final check that every new "
    "pod runs that revision's image (else back to what ran before), audit record."
)


def command(
    ctx: typer.Context,
    env: str = typer.Option(..., "--env", metavar="ENV", help="Environment."),
    app: str = typer.Option(..., "--app", metavar="APP", help="App to roll back."),
    revision: Optional[int] = typer.Option(None, "--revision", metavar="N", help="Helm revision to go back to."),
    yes: bool = O.YES,
    reason: str = O.REASON,
    kubeconfig: Optional[str] = O.KUBECONFIG,
    kube_context: Optional[str] = O.KUBE_CONTEXT,
    timeout: str = O.TIMEOUT,
    grace: str = O.GRACE,
    break_lock: bool = O.BREAK_LOCK,
) -> None:
    from manual_deploy.durations import parse_duration
    from manual_deploy.rollback import RollbackRequest, run_rollback
    from manual_deploy.views.rollback import result_line

    session = ctx.obj
    request = RollbackRequest(
        env=env, app=app, revision=revision, yes=yes, reason=reason, kubeconfig=kubeconfig, kube_context=kube_context,
        timeout_s=parse_duration(timeout, option="--timeout"), grace_s=parse_duration(grace, option="--grace"),
        break_lock=break_lock,
    )
    result = run_rollback(session.config(), request, session.out)
    session.out.result(result, result_line(result))
