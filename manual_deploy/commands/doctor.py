"""`manual-deploy doctor`: a preflight for the on-call engineer, one line per check."""

from __future__ import annotations

from typing import List, Optional

import typer

HELP = (
    "Check that this machine can deploy: config, helm ≥ 3.8, git, kubeconfig and each env's context and "
    "cluster, the registry and quay API, the deploy-config repo and its branches, quay credentials.\n\n"
    "One line per check: ✓ ok, ✗ failed (required), ! warning (optional), each ✗ and ! with the next command. "
    "Network checks run at once, each bounded to 5 s, so it answers in seconds even when things are down. "
    "Exit 0 when every required check passes, else 1. Secrets are only reported as set / not set."
)


def command(
    ctx: typer.Context,
    env: Optional[List[str]] = typer.Option(None, "--env", metavar="ENV", help="Env(s) to check; repeat for several. Default: all."),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", metavar="PATH", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."),
) -> int:
    from manual_deploy.doctor import DoctorRequest, run_doctor
    from manual_deploy.errors import FAILED, OK
    from manual_deploy.views.doctor import report_text, summary

    session = ctx.obj
    request = DoctorRequest(
        config_path=session.config_path, config_origin=_config_origin(ctx), envs=tuple(env or ()), kubeconfig=kubeconfig
    )
    report = run_doctor(request, session.out)
    session.out.result(report.as_dict(), report_text(report))
    if report.ok:
        return OK
    # Not raised as an error: the report above already is the result (and the JSON object on stdout).
    session.out.error(f"doctor: {summary(report)}", "run the `next:` command of each ✗ line, then `manual-deploy doctor` again")
    return FAILED


def _config_origin(ctx: typer.Context) -> str:
    """Where --config came from, as click saw it: the option, $MANUAL_DEPLOY_CONFIG, or neither (bundled)."""
    session = ctx.obj
    if not session.config_path:
        return "bundled"
    source = ctx.parent.get_parameter_source("config") if ctx.parent is not None else None
    return "env" if getattr(source, "name", None) == "ENVIRONMENT" else "option"  # click's ParameterSource
