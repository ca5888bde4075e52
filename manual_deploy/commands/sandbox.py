"""`manual-deploy sandbox …`: a slot for the local drill, whose commands ship in the manual-deploy-sandbox distribution.

The product never imports the stand-ins: the sandbox distribution declares its Typer app under the
`manual_deploy.commands` entry point, found here only when `sandbox` is run.
"""

from __future__ import annotations

import typer

HELP = (
    "A local drill of the whole chain, no cloud account: an app repo, ingest-kube-deployment, the real registry, a quay "
    "stand-in that builds pushed tags, a GitLab stand-in, an emulated cluster with the three ingest contexts "
    "(`sandbox up|env|check|gitlab|down`; needs the manual-deploy-sandbox distribution)."
)
ENTRY_POINTS = "manual_deploy.commands"
INSTALL_HINT = ("install the stand-ins beside the tool: `pipx inject manual-deploy ./sandbox` (pipx) or "
                "`pip install ./sandbox` (a venv), from a checkout of manual-deploy; `make demo` does it for you")
CONTEXT = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def command(ctx: typer.Context) -> None:
    """Hand the rest of the command line to the sandbox distribution's own commands."""
    group = typer.main.get_group(installed_app())
    with group.make_context(ctx.info_name, list(ctx.args), parent=ctx.parent,
                            help_option_names=["-h", "--help"]) as sub:
        group.invoke(sub)


def installed_app() -> typer.Typer:
    from importlib.metadata import entry_points

    from manual_deploy.errors import UsageError

    found = entry_points(group=ENTRY_POINTS, name="sandbox")
    if not found:
        raise UsageError("the sandbox is not installed (it ships apart from the tool, in manual-deploy-sandbox)",
                         hint=INSTALL_HINT)
    return next(iter(found)).load()
