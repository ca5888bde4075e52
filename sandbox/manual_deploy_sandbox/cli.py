"""`manual-deploy sandbox up|env|check|gitlab|down`: the local drill environment.

The product finds `sandbox_app` through the `manual_deploy.commands` entry point this distribution declares."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

HELP = (
    "A local drill of the whole chain, no cloud account: an app repo, ingest-kube-deployment, the real "
    "registry, a quay stand-in that builds pushed tags, a GitLab stand-in, an emulated cluster with the three ingest contexts."
)
DIR_HELP = "Where the sandbox lives (default: $MANUAL_DEPLOY_SANDBOX_DIR, which `sandbox env` sets, else the per-user state dir)."

sandbox_app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None)


def _dir(directory: Optional[Path]) -> Path:
    from manual_deploy import paths

    return directory if directory is not None else paths.sandbox_dir()


@sandbox_app.command("up", help="Start the sandbox (says so if it is already up).")
def up(
    ctx: typer.Context,
    directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP),
    deploy_repo: Optional[str] = typer.Option(
        None, "--deploy-repo", metavar="PATH_OR_URL",
        help="Serve this ingest-kube-deployment (a checkout or a git URL, all branches) instead of the generated one.",
    ),
) -> None:
    from manual_deploy_sandbox.drill import env_lines, up as start

    session = ctx.obj
    if deploy_repo and Path(deploy_repo).expanduser().exists():
        deploy_repo = str(Path(deploy_repo).expanduser().resolve())
    ready = start(_dir(directory), session.out, deploy_repo=deploy_repo)
    session.out.info(f"next: eval \"$(manual-deploy sandbox env{'' if directory is None else f' --dir {directory}'})\"; cd {ready['app_checkout']}")
    _drill_hint(session.out, ready)
    session.out.result(ready, "\n".join(env_lines(ready)))


@sandbox_app.command("env", help="Print the export lines that point manual-deploy at the sandbox.")
def env(ctx: typer.Context, directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP)) -> None:
    from manual_deploy.errors import UsageError
    from manual_deploy_sandbox.drill import env_lines, pid_alive, read_ready

    ready = read_ready(_dir(directory))
    if not ready or not pid_alive(ready.get("pid")):
        raise UsageError(f"the sandbox is not running in {_dir(directory)}", hint="start it: manual-deploy sandbox up")
    _drill_hint(ctx.obj.out, ready)
    ctx.obj.out.result(ready, "\n".join(env_lines(ready)))


def _drill_hint(out, ready: dict) -> None:
    """How to drill against the served config repo (on stderr: stdout is for `eval`)."""
    served = ready.get("deploy_repo_source") or "the generated ingest-kube-deployment"
    tag = ready.get("drill_tag", "sandbox")
    out.info(f"config repo: {served}; every app has an image tagged {tag!r}: "
             f"`manual-deploy apply --env prod --app ingest-broker --tag {tag} --yes`, "
             f"or every app to every env: `manual-deploy sandbox check`")


@sandbox_app.command("check", help="Deploy every configured app to each env in turn with the real helm; one line per "
                                     "app and env: deployed, or the reason it would fail. Exit 1 if any would fail.")
def check(
    ctx: typer.Context,
    directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP),
    env: Optional[list[str]] = typer.Option(None, "--env", metavar="ENV", help="Only these envs (default: all)."),
    grace: str = typer.Option("20s", "--grace", metavar="DURATION", help="apply's --grace for each app."),
    timeout: str = typer.Option("3m", "--timeout", metavar="DURATION", help="apply's --timeout for each app."),
) -> None:
    from manual_deploy.config import load_config
    from manual_deploy.errors import OperationFailed, UsageError
    from manual_deploy_sandbox.check import check_env
    from manual_deploy_sandbox.drill import pid_alive, read_ready

    ready = read_ready(_dir(directory))
    if not ready or not pid_alive(ready.get("pid")):
        raise UsageError(f"the sandbox is not running in {_dir(directory)}", hint="start it: manual-deploy sandbox up")
    config = load_config(ready["config"])
    envs = list(env or config.environments)
    for name in envs:
        config.environment(name)
    rows = [row for name in envs for row in check_env(ready, name, list(config.apps), grace=grace, timeout=timeout,
                                                        out=ctx.obj.out)]
    results = {"results": [row.__dict__ for row in rows]}
    failed = [row for row in rows if not row.ok]
    if not failed or not ctx.obj.out.json:  # with failures, JSON output is the error's own document
        ctx.obj.out.result(results, "\n".join(row.line() for row in rows))
    if failed:
        raise OperationFailed(f"{len(failed)} of {len(rows)} app deploys would fail", details=results,
                              hint="each FAILED line says why; fix the chart or the config repo, then `manual-deploy sandbox check` again")


@sandbox_app.command("gitlab", help="Play the GitLab outage: `down` closes the sandbox's GitLab (connections refused), "
                                      "`up` brings it back on the same URL with its records kept.")
def gitlab(
    ctx: typer.Context,
    state: str = typer.Argument(..., metavar="down|up", help="down or up."),
    directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP),
) -> None:
    from manual_deploy.errors import UsageError
    from manual_deploy_sandbox.drill import set_gitlab

    if state not in ("down", "up"):
        raise UsageError(f"unknown state {state!r} for the sandbox's GitLab", hint="manual-deploy sandbox gitlab down (or up)")
    now = set_gitlab(_dir(directory), state == "up", ctx.obj.out)
    ctx.obj.out.result({"gitlab": now}, now)


@sandbox_app.command("down", help="Stop every process the sandbox started (safe to run twice).")
def down(ctx: typer.Context, directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP)) -> None:
    from manual_deploy_sandbox.drill import down as stop

    where = _dir(directory)
    stopped = stop(where, ctx.obj.out)
    ctx.obj.out.result({"stopped": stopped, "dir": str(where)}, "stopped" if stopped else f"not running (no sandbox in {where})")
