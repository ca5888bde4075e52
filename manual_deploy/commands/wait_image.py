"""`manual-deploy wait-image`: not implemented yet (its issue has not landed)."""

from __future__ import annotations

import typer

from manual_deploy.errors import NotImplementedYet

HELP = "(not implemented yet) Wait for quay.io to build the tag; print the image and its digest."


def command(ctx: typer.Context) -> None:
    raise NotImplementedYet("wait-image is not implemented yet", hint="watch the build on quay.io by hand for now")
