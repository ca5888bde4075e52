"""The command line: global options, command registration and the one place errors become exit codes.

Commands live in `manual_deploy.commands`; heavy libraries (git, kubernetes, pyhelm3, requests)
are imported only inside them, so `manual-deploy --help` starts fast.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import NoReturn, Optional

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError as ParseError  # typer's vendored click

from manual_deploy import __version__, errors, interrupts
from manual_deploy.commands import apply as apply_cmd
from manual_deploy.commands import deploy as deploy_cmd
from manual_deploy.commands import doctor as doctor_cmd
from manual_deploy.commands import gitlab_sync as gitlab_sync_cmd
from manual_deploy.commands import history as history_cmd
from manual_deploy.commands import promote as promote_cmd
from manual_deploy.commands import rollback as rollback_cmd
from manual_deploy.commands import sandbox as sandbox_cmd
from manual_deploy.commands import status as status_cmd
from manual_deploy.commands import tag as tag_cmd
from manual_deploy.commands import wait_image as wait_image_cmd
from manual_deploy.redact import env_secrets, redact
from manual_deploy.session import Session

EXIT_CODES_HELP = (
    "Global options (--config, --output, -v) may also follow the command. Exit codes: "
    + "; ".join(f"{code} {text.split(' (')[0]}" for code, text in errors.EXIT_CODES.items())
    + "."
)


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


app = typer.Typer(
    name="manual-deploy",
    help="Ship an HCA ingest app to its EKS cluster when GitLab is down: tag → wait-image → apply.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich's help renderer (markdown-it, rich.traceback) doubled start-up time.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"manual-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(
        None, "--config", envvar="MANUAL_DEPLOY_CONFIG", metavar="PATH",
        help="Config file (YAML). Default: the bundled configs/ingest.yaml.",
    ),
    output: OutputFormat = typer.Option(OutputFormat.text, "--output", "-o", help="Result format on stdout."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail on stderr; tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    session: Session = ctx.ensure_object(Session)
    session.config_path = config
    session.out.format = output.value
    session.out.verbose = verbose
    quiet_libraries(verbose)


def quiet_libraries(verbose: bool) -> None:
    """The kubernetes client logs an exec plugin's failure as `ERROR:root:…` before we say it better;
    with -v every library's log lines are shown, else none."""
    import logging

    if verbose:
        logging.disable(logging.NOTSET)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        logging.disable(logging.CRITICAL)


app.command("tag", help=tag_cmd.HELP, epilog=EXIT_CODES_HELP)(tag_cmd.command)
app.command("wait-image", help=wait_image_cmd.HELP, epilog=EXIT_CODES_HELP)(wait_image_cmd.command)
app.command("apply", help=apply_cmd.HELP, epilog=EXIT_CODES_HELP)(apply_cmd.command)
app.command("deploy", help=deploy_cmd.HELP, epilog=EXIT_CODES_HELP)(deploy_cmd.command)
app.command("promote", help=promote_cmd.HELP, epilog=EXIT_CODES_HELP)(promote_cmd.command)
app.command("rollback", help=rollback_cmd.HELP, epilog=EXIT_CODES_HELP)(rollback_cmd.command)
app.command("status", help=status_cmd.HELP, epilog=EXIT_CODES_HELP)(status_cmd.command)
app.command("history", help=history_cmd.HELP, epilog=EXIT_CODES_HELP)(history_cmd.command)
app.command("doctor", help=doctor_cmd.HELP, epilog=EXIT_CODES_HELP)(doctor_cmd.command)
app.command("gitlab-sync", help=gitlab_sync_cmd.HELP, epilog=EXIT_CODES_HELP)(gitlab_sync_cmd.command)
app.command("sandbox", help=sandbox_cmd.HELP, context_settings=sandbox_cmd.CONTEXT, add_help_option=False)(sandbox_cmd.command)


_GLOBAL_FLAGS = {"-v", "--verbose"}
_GLOBAL_VALUED = {"--config", "--output", "-o"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Let global options follow the command too (`manual-deploy tag -o json`), as users type them."""
    if not argv or argv[0].startswith("-"):
        front, rest = [], list(argv)
        while rest and rest[0].startswith("-"):
            option = rest.pop(0)
            front.append(option)
            if option in _GLOBAL_VALUED and rest:
                front.append(rest.pop(0))
        if not rest:
            return front
        argv = rest
    else:
        front = []
    command, *tail = argv
    moved, kept = [], []
    iterator = iter(tail)
    for arg in iterator:
        if arg == "--":
            kept.append(arg)
            kept.extend(iterator)
            break
        name = arg.split("=", 1)[0]
        if arg in _GLOBAL_FLAGS:
            moved.append(arg)
        elif name in _GLOBAL_VALUED and name.startswith("--") and "=" in arg:
            moved.append(arg)
        elif arg in _GLOBAL_VALUED:
            moved.append(arg)
            moved.append(next(iterator, ""))
        else:
            kept.append(arg)
    return [*front, *moved, command, *kept]


def _report(session: Session, exc: errors.ManualDeployError) -> int:
    exc.message, exc.hint = redact(exc.message, *env_secrets()), redact(exc.hint, *env_secrets()) if exc.hint else None
    session.out.error(exc.message, exc.hint)
    if session.out.json:
        session.out.result(
            {"ok": False, "error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code, **exc.details}, ""
        )
    return exc.exit_code


def _given_value(argv: list[str], opts) -> str | None:
    """What the user typed for one of `opts` (the last occurrence), to quote it back in a usage error."""
    given = None
    for i, arg in enumerate(argv):
        for opt in opts:
            if arg == opt and i + 1 < len(argv):
                given = argv[i + 1]
            elif opt.startswith("--") and arg.startswith(f"{opt}="):
                given = arg.split("=", 1)[1]
    return given


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome to a documented exit code."""
    session = Session()
    interrupts.install()
    argv = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    try:
        rv = app(args=argv, prog_name="manual-deploy", standalone_mode=False, obj=session)
        return rv if isinstance(rv, int) else errors.OK
    except errors.ManualDeployError as exc:
        if session.out.verbose:
            import traceback

            traceback.print_exc()
        return _report(session, exc)
    except ParseError as exc:  # unknown option or command, a bad or missing value: the same two lines as ours
        if isinstance(exc, NoArgsIsHelpError):
            exc.show()
            return exc.exit_code
        command = exc.ctx.command_path if exc.ctx is not None else "manual-deploy"
        message = exc.format_message().removeprefix("Error: ")
        given = _given_value(argv, getattr(getattr(exc, "param", None), "opts", None) or ())
        if given is not None and repr(given) not in message:
            message = f"{message.rstrip('.')} (got {given!r})"
        return _report(session, errors.UsageError(message, hint=f"see `{command} --help` for the valid options and values"))
    except typer.TyperException as exc:  # typer's own usage errors (bad option, missing value)
        exc.show() if hasattr(exc, "show") else session.out.error(exc.format_message())
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        session.out.error(f"interrupted by {interrupts.name()}; nothing further was done")
        return interrupts.exit_code()
    except Exception as exc:  # a bug, not an expected failure: still no raw traceback unless asked
        from manual_deploy.kube import is_refusal, refusal

        if is_refusal(exc):  # a 401/403 no command caught: still the one refusal wording, exit 3
            return _report(session, refusal(exc))
        if session.out.verbose:
            import traceback

            traceback.print_exc()
        session.out.error(redact(f"internal error: {type(exc).__name__}: {exc}", *env_secrets()),
                          "re-run with -v for the traceback and report it")
        return errors.FAILED


def run() -> NoReturn:
    """The console script: main(), then exit without tearing the interpreter down.

    Finalising the interpreter after an apply (kubernetes' thousands of model classes, pydantic,
    pyhelm3) takes 0.4–0.6 s, the largest single cost after helm itself. Everything that matters at
    exit is done by then (locks released, helm stopped, results written); atexit handlers still run
    (the kubernetes client's temporary certificate files are removed by one).
    """
    code = main()
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
