"""`manual-deploy sandbox up|env|down`: the local drill environment."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

HELP = (
    "A local drill of the whole chain, no cloud account: an app repo, ingest-kube-deployment, the real "
    "registry, a quay stand-in that builds pushed tags, an emulated cluster with the three ingest contexts."
)
DIR_HELP = "Where the sandbox lives (default: $MANUAL_DEPLOY_SANDBOX_DIR, which `sandbox env` sets, else the per-user state dir)."

sandbox_app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None)


def _dir(directory: Optional[Path]) -> Path:
    from manual_deploy import paths

    return directory if directory is not None else paths.sandbox_dir()


def _require_extra() -> None:
    """The sandbox needs the [sandbox] extra (kmock); the deploy commands never do."""
    try:
        import kmock  # noqa: F401
    except ImportError:
        from manual_deploy.errors import UsageError

        raise UsageError(
            "the sandbox needs the optional [sandbox] dependencies",
            hint="pip install 'manual-deploy[sandbox]' (or run `make demo` in a checkout)",
        ) from None


@sandbox_app.command("up", help="Start the sandbox (says so if it is already up).")
def up(ctx: typer.Context, directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP)) -> None:
    _require_extra()
    from manual_deploy.sandbox.drill import env_lines, up as start

    session = ctx.obj
    ready = start(_dir(directory), session.out)
    session.out.info(f"next: eval \"$(manual-deploy sandbox env{'' if directory is None else f' --dir {directory}'})\"; cd {ready['app_checkout']}")
    session.out.result(ready, "\n".join(env_lines(ready)))


@sandbox_app.command("env", help="Print the export lines that point manual-deploy at the sandbox.")
def env(ctx: typer.Context, directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP)) -> None:
    from manual_deploy.errors import UsageError
    from manual_deploy.sandbox.drill import env_lines, pid_alive, read_ready

    ready = read_ready(_dir(directory))
    if not ready or not pid_alive(ready.get("pid")):
        raise UsageError(f"the sandbox is not running in {_dir(directory)}", hint="start it: manual-deploy sandbox up")
    ctx.obj.out.result(ready, "\n".join(env_lines(ready)))


@sandbox_app.command("down", help="Stop every process the sandbox started (safe to run twice).")
def down(ctx: typer.Context, directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR", help=DIR_HELP)) -> None:
    from manual_deploy.sandbox.drill import down as stop

    where = _dir(directory)
    stopped = stop(where, ctx.obj.out)
    ctx.obj.out.result({"stopped": stopped, "dir": str(where)}, "stopped" if stopped else f"not running (no sandbox in {where})")
