"""`manual-deploy apply`: not implemented yet (its issue has not landed)."""

from __future__ import annotations

import typer

from manual_deploy.errors import NotImplementedYet

HELP = "(not implemented yet) Deploy the image to an environment with helm and verify it is live."


def command(ctx: typer.Context) -> None:
    raise NotImplementedYet(
        "apply is not implemented yet",
        hint="follow ingest-kube-deployment's README: source config/environment_<env>; cd apps; make deploy-app-<app> image=…",
    )
