"""`manual-deploy wait-image`: wait for quay.io to build the tag; print the image pinned by digest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

HELP = (
    "Wait for quay.io to build the tag and print the image as <host>/<namespace>/<app>:<tag>@<digest>.\n\n"
    "App and tag default to what `manual-deploy tag` recorded in this checkout. Shows the build phase as "
    "it changes and a progress line at least every 10 s; stops at once if the build fails (exit 1), when no "
    "build appears within --no-build-timeout or nothing lands within --timeout (exit 4). Set QUAY_TOKEN to "
    "see builds of a private repository, QUAY_USERNAME/QUAY_PASSWORD to read its registry.\n\n"
    "When quay's build trigger did not fire for the tag, --start-build starts it (after one look: never when "
    "the image or a build of the tag is already there) and follows that build."
)
START_BUILD_HELP = (
    "Start the repository's build trigger for the tag if no build is there; needs QUAY_TOKEN, "
    "an OAuth token with repo:admin (refused otherwise, exit 3)."
)


def command(
    ctx: typer.Context,
    app: Optional[str] = typer.Option(None, "--app", metavar="APP", help="App (default: recorded by `tag`)."),
    tag: Optional[str] = typer.Option(None, "--tag", metavar="TAG", help="Image tag (default: recorded by `tag`)."),
    repo: Path = typer.Option(Path("."), "--repo", metavar="PATH", help="App checkout holding the recorded state."),
    timeout: str = typer.Option("45m", "--timeout", metavar="DURATION", help="Give up after this long (exit 4)."),
    no_build_timeout: str = typer.Option(
        "10m", "--no-build-timeout", metavar="DURATION", help="Give up if no build for the tag appears by then (exit 4)."
    ),
    start_build: bool = typer.Option(False, "--start-build", help=START_BUILD_HELP),
) -> None:
    from manual_deploy.durations import parse_duration
    from manual_deploy.wait_image import WaitRequest, wait_for_image

    session = ctx.obj
    request = WaitRequest(
        repo=str(repo),
        app=app,
        tag=tag,
        timeout=parse_duration(timeout, option="--timeout"),
        no_build_timeout=parse_duration(no_build_timeout, option="--no-build-timeout"),
        start_build=start_build,
    )
    result = wait_for_image(session.config(), request, session.out)
    session.out.result(result.as_dict(), result.reference)
