"""Docs drift: every `manual-deploy …` line in README.md and RUNBOOK.md must be valid against the real CLI.

The docs are scanned for `manual-deploy …` in code blocks (fenced and indented, with an optional `$ `
prompt) and in inline backtick spans. Each hit is one of:

- a *command* — something to type: it must parse against the real CLI (`typer.main.get_command`, click's
  `make_context`, global options hoisted like `manual_deploy.cli.main` does), required options included.
  Nothing is executed: only the parser and the option types run.
- a *synopsis* — shows optional syntax (`[--app APP ...]`, `--image REF | --tag TAG`): every option it
  names must exist for that command, with the right arity (a value or a flag), repeatable ones must be
  repeatable, and its non-optional part must itself parse (so the required options are shown).
- a *reference* — a heading naming a command (`### manual-deploy apply`): the command must exist.

Placeholders (`<tag>`, `N`, `ENV`, `"…"`) are fine as values. A failure names the file:line and the line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

import manual_deploy.cli
from manual_deploy.cli import hoist_global_options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "RUNBOOK.md")
PROG = "manual-deploy"

# `manual-deploy`, `$ manual-deploy`, `.venv/bin/manual-deploy`, followed by at least one argument.
_INVOCATION = re.compile(r"^(?:\$\s+)?(?:[\w.~/-]*/)?manual-deploy(?=\s+\S)")
_FENCE = re.compile(r"^\s{0,3}(```+|~~~+)")
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
# Optional syntax: brackets, `...`, alternatives (`--image REF | --tag TAG`, `text|json`, `up|env|down`).
# A shell pipe into another program (`… -o json | jq .`) is not a synopsis mark.
_SYNOPSIS_MARK = re.compile(r"[\[\]]|\.\.\.|\s\|\s+-|[\w>]\|[\w<-]")
_PLACEHOLDER = re.compile(r"^(?:<[^<>]+>|[A-Z][A-Z0-9_]*|.*….*)$")


@dataclass(frozen=True)
class DocLine:
    file: str
    lineno: int
    text: str  # normalised: program name first, comments stripped, continuation lines joined
    kind: str  # "command" | "synopsis" | "reference"
    source: str  # "code" | "inline" | "heading"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


# --------------------------------------------------------------------------------------------- extraction


def _strip_comment(text: str) -> str:
    """Drop a trailing `# comment` (a `#` starting a word, outside quotes)."""
    quote = None
    for k, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (k == 0 or text[k - 1].isspace()):
            return text[:k].rstrip()
    return text.rstrip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _code_mask(lines: list[str]) -> list[bool]:
    """Which lines are inside a fenced or an indented code block (fence lines themselves are not)."""
    mask = [False] * len(lines)
    fence = None
    prev_blank, in_indented = True, False
    for i, line in enumerate(lines):
        if fence:
            if line.strip().startswith(fence):
                fence = None
            else:
                mask[i] = True
            continue
        m = _FENCE.match(line)
        if m:
            fence, in_indented, prev_blank = m.group(1), False, False
            continue
        if not line.strip():
            prev_blank = True
            continue
        if (line.startswith("    ") or line.startswith("\t")) and (prev_blank or in_indented):
            mask[i] = in_indented = True
        else:
            in_indented = False
        prev_blank = False
    return mask


def _normalise(text: str) -> str | None:
    """`$ .venv/bin/manual-deploy  tag …  # c` → `manual-deploy tag …`; None if it is not an invocation."""
    text = " ".join(_strip_comment(text.strip()).split())
    m = _INVOCATION.match(text)
    if not m:
        return None
    return PROG + text[m.end():]


def _classify(text: str, source: str) -> str:
    if _SYNOPSIS_MARK.search(_QUOTED.sub('""', text)):
        return "synopsis"
    return "reference" if source == "heading" else "command"


def _code_lines(name: str, lines: list[str], mask: list[bool]) -> list[DocLine]:
    found = []
    for i, line in enumerate(lines):
        if not mask[i]:
            continue
        start = line.lstrip()
        if not _INVOCATION.match(start):
            continue
        parts = [_strip_comment(start)]
        j = i + 1
        while j < len(lines) and mask[j] and lines[j].strip():
            nxt = lines[j].strip()
            backslash = parts[-1].endswith("\\")
            deeper = _indent(lines[j]) > _indent(line) and not _INVOCATION.match(nxt)
            if not (backslash or deeper):
                break
            if backslash:
                parts[-1] = parts[-1][:-1]
            parts.append(_strip_comment(nxt))
            j += 1
        text = _normalise(" ".join(parts))
        if text:
            found.append(DocLine(name, i + 1, text, _classify(text, "code"), "code"))
    return found


def _inline_lines(name: str, lines: list[str], mask: list[bool]) -> list[DocLine]:
    """Backtick spans in prose, headings and tables; a prose span may run over a line break."""
    blocks: list[tuple[int, list[str], str]] = []  # (first line index, lines, source)
    current: list[str] = []
    start = 0

    def close():
        nonlocal current
        if current:
            blocks.append((start, current, "inline"))
        current = []

    for i, line in enumerate(lines):
        stripped = line.strip()
        if mask[i] or not stripped or _FENCE.match(line):
            close()
        elif stripped.startswith("#") or stripped.startswith("|"):
            close()
            blocks.append((i, [line], "heading" if stripped.startswith("#") else "inline"))
        else:
            if not current:
                start = i
            current.append(line)
    close()

    found = []
    for first, block, source in blocks:
        text = "\n".join(block)
        for m in _SPAN.finditer(text):
            normalised = _normalise(m.group(2))
            if normalised:
                lineno = first + text.count("\n", 0, m.start()) + 1
                found.append(DocLine(name, lineno, normalised, _classify(normalised, source), source))
    return found


def extract(name: str) -> list[DocLine]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    mask = _code_mask(lines)
    return sorted(_code_lines(name, lines, mask) + _inline_lines(name, lines, mask), key=lambda d: d.lineno)


ALL_LINES = [doc for name in DOCS for doc in extract(name)]


def _params(kind: str) -> list:
    docs = [d for d in ALL_LINES if d.kind == kind]
    ids, seen = [], {}
    for d in docs:
        seen[d.where] = seen.get(d.where, 0) + 1
        ids.append(d.where if seen[d.where] == 1 else f"{d.where}#{seen[d.where]}")
    return [pytest.param(d, id=i) for d, i in zip(docs, ids)]


# --------------------------------------------------------------------------------------------- the CLI


def _group():
    """The CLI as a user with the sandbox distribution installed sees it: the `sandbox` slot resolved."""
    from manual_deploy.commands.sandbox import installed_app

    group = typer.main.get_command(manual_deploy.cli.app)
    group.commands["sandbox"] = typer.main.get_group(installed_app())
    group.commands["sandbox"].name = "sandbox"
    return group


def _is_group(command) -> bool:
    return hasattr(command, "resolve_command") and hasattr(command, "commands")


def _commands(group) -> dict:
    """What `--help` of this group lists: its visible commands, in order."""
    ctx = group.make_context(PROG, ["--help"], resilient_parsing=True)
    return {n: group.get_command(ctx, n) for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden}


def _option_map(command) -> dict:
    """Every option spelling of `command` → its parameter."""
    return {name: p for p in command.params for name in (*p.opts, *p.secondary_opts) if name.startswith("-")}


def _given_value(args: list[str], param) -> tuple[int, str] | None:
    """(index in args, the value text) of the value given to `param`."""
    names = set(param.opts) | set(param.secondary_opts)
    for k, arg in enumerate(args):
        if arg in names and k + 1 < len(args):
            return k, args[k + 1]
        if "=" in arg and arg.split("=", 1)[0] in names:
            return k, arg.split("=", 1)[1]
    return None


def shell_argv(text: str) -> list[str]:
    """shlex-split a doc command line; stop at the first shell operator (`| jq`, `&& …`, `> file`)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    argv = []
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            break
        argv.append(token)
    return argv


def _parse_once(args: list[str]) -> list:
    """Parse like TyperGroup.invoke does, down through sub-groups; return the command path. Runs nothing."""
    group = _group()
    ctx = group.make_context(PROG, list(args), resilient_parsing=False)
    path, command = [group], group
    while _is_group(command):
        rest = [*ctx._protected_args, *ctx.args]  # what TyperGroup.invoke hands to resolve_command
        if not rest:
            ctx.fail("Missing command.")
        name, command, sub_args = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, sub_args, parent=ctx)
        path.append(command)
    return path


def parse_error(argv: list[str]) -> str | None:
    """None if `manual-deploy ARGV` parses (required options included), else click's message. Runs nothing."""
    args = hoist_global_options(list(argv))
    for _ in range(len(args) + 1):
        try:
            path = _parse_once(args)
        except typer.Exit as exc:  # --help / --version: eager, they print and exit 0
            return None if exc.exit_code == 0 else f"exits {exc.exit_code}"
        except typer.TyperException as exc:
            param = getattr(exc, "param", None)
            given = _given_value(args, param) if param is not None and type(exc).__name__ == "BadParameter" else None
            if given and _PLACEHOLDER.match(given[1]):  # a placeholder like N: retry with a typed sample
                k, value = given
                if args[k].endswith("=" + value):
                    args[k] = args[k][: len(args[k]) - len(value)] + "1"
                else:
                    args[k + 1] = "1"
                continue
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            return f"{type(exc).__name__} (exit {getattr(exc, 'exit_code', '?')}): {message}"
        # An option given twice that is not repeatable: the CLI silently keeps the last one.
        options = {name: param for command in path for name, param in _option_map(command).items()}
        counts: dict = {}
        for arg in args:
            param = options.get(arg.split("=", 1)[0])
            if param is not None:
                counts[param.name] = counts.get(param.name, 0) + 1
                if counts[param.name] == 2 and not param.multiple and not getattr(param, "count", False):
                    return f"{arg.split('=', 1)[0]} is given twice but is not repeatable (the last one wins)"
        return None
    return "placeholder substitution did not converge"


def _synopsis_tokens(text: str) -> list[str]:
    text = _QUOTED.sub(" VALUE ", text)
    text = re.sub(r"\.\.\.|…", " ... ", text)
    return re.findall(r"\.\.\.|[\[\]|]|[^\s\[\]|]+", text)


def _is_word(token: str) -> bool:
    return token not in ("[", "]", "|", "...") and not token.startswith("-")


def synopsis_problems(text: str) -> list[str]:
    group = _group()
    tokens = _synopsis_tokens(text)
    assert tokens and tokens[0] == PROG
    # The command path: `manual-deploy apply`, `manual-deploy sandbox up`, `manual-deploy sandbox up|env|down`.
    targets, names, k = [group], [PROG], 1
    while all(_is_group(t) for t in targets) and k < len(tokens) and _is_word(tokens[k]):
        alternatives = [tokens[k]]
        while k + 2 < len(tokens) and tokens[k + 1] == "|" and _is_word(tokens[k + 2]):
            alternatives.append(tokens[k + 2])
            k += 2
        k += 1
        commands = _commands(targets[0])
        unknown = [a for a in alternatives if a not in commands]
        if unknown:
            where = " ".join(names)
            return [f"{unknown[0]!r} is not a command of `{where}`; it has: {', '.join(commands)}"]
        names.append("|".join(alternatives))
        targets = [commands[a] for a in alternatives]
    where = " ".join(names)
    if targets == [group]:
        return [f"no command named; commands: {', '.join(_commands(group))}"]
    help_names = group.context_settings.get("help_option_names", ["--help"])
    global_opts = _option_map(group)

    problems, seen = [], {}
    skeleton, depth, skip = [], 0, 0  # skeleton: the part outside [ ], first of each `a | b` alternative
    for i in range(k, len(tokens)):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        opt, _, inline_value = tok.partition("=")
        is_option = tok.startswith("-") and tok not in ("-", "--")
        has_value = is_option and (bool(inline_value) or _is_word(nxt) and nxt != "")
        if tok == "[":
            depth += 1
            continue
        if tok == "]":
            depth -= 1
            continue
        if depth == 0 and tok == "|":
            skip = 1
        elif depth == 0 and tok != "...":
            if skip:
                skip = 1 if has_value and not inline_value else 0
            else:
                skeleton.append(tok)
        if not is_option or opt in help_names:
            continue
        for target in targets:
            param = _option_map(target).get(opt) or global_opts.get(opt)
            if param is None:
                problems.append(f"{opt}: no such option of `{PROG} {target.name}` (it has: {', '.join(sorted(_option_map(target)))})")
                continue
            if has_value and param.is_flag:
                problems.append(f"{opt} is a flag, but the synopsis gives it a value ({inline_value or nxt})")
            if not has_value and not param.is_flag:
                problems.append(f"{opt} takes a value, but the synopsis shows none")
            repeated = (target.name, param.name) in seen or (has_value and i + 2 < len(tokens) and tokens[i + 2] == "...")
            if repeated and not param.multiple:
                problems.append(f"{opt} is shown as repeatable, but `{PROG} {target.name}` takes it only once")
            seen[(target.name, param.name)] = True
    if depth != 0:
        problems.append("unbalanced [ ]")
    if not problems:
        prefix = names[1:-1]
        for alternative in names[-1].split("|"):
            error = parse_error([*prefix, alternative, *skeleton])
            if error:
                problems.append(f"its non-optional part `{' '.join([PROG, *prefix, alternative, *skeleton])}` does not parse: {error}")
    return sorted(set(problems), key=problems.index)


# --------------------------------------------------------------------------------------------- the tests


def _command_path(words: list[str]) -> tuple[list, str | None]:
    """Follow command names through groups: (commands found, the first unknown name or None)."""
    path = [_group()]
    for word in words:
        commands = _commands(path[-1]) if _is_group(path[-1]) else {}
        if word not in commands:
            return path, word
        path.append(commands[word])
    return path, None


@pytest.mark.parametrize("doc", _params("command"))
def test_doc_command_parses(doc: DocLine):
    try:
        argv = shell_argv(doc.text)
    except ValueError as exc:
        pytest.fail(f"{doc.where}: cannot split `{doc.text}` like a shell would: {exc}")
    assert argv[0] == PROG
    path, unknown = _command_path(argv[1:])
    if unknown is None and _is_group(path[-1]) and len(path) > 1:
        return  # `manual-deploy sandbox` in prose names a command group; its subcommands are checked where shown
    error = parse_error(argv[1:])
    assert error is None, f"{doc.where}: `{doc.text}` is not a valid command line: {error}"


@pytest.mark.parametrize("doc", _params("synopsis"))
def test_doc_synopsis_matches_the_cli(doc: DocLine):
    problems = synopsis_problems(doc.text)
    assert not problems, f"{doc.where}: synopsis `{doc.text}` drifted from the CLI:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("doc", _params("reference"))
def test_doc_heading_names_a_command(doc: DocLine):
    path, unknown = _command_path(shell_argv(doc.text)[1:])
    if unknown is not None and (len(path) == 1 or _is_group(path[-1])):
        commands = ", ".join(_commands(path[-1]))
        pytest.fail(f"{doc.where}: `{doc.text}` names no command ({unknown!r}); commands here: {commands}")
    if unknown is not None:  # a heading showing options too: they must exist
        error = parse_error(shell_argv(doc.text)[1:])
        assert error is None or "Missing" in error, f"{doc.where}: `{doc.text}`: {error}"


def test_extractor_finds_the_doc_commands():
    kinds = {kind: [d for d in ALL_LINES if d.kind == kind] for kind in ("command", "synopsis", "reference")}
    assert len(kinds["command"]) >= 15, [d.where for d in kinds["command"]]
    assert len(kinds["synopsis"]) >= 5, [d.where for d in kinds["synopsis"]]
    assert {d.file for d in kinds["command"]} == set(DOCS)
    assert {d.source for d in kinds["command"]} >= {"code", "inline"}


def test_extractor_handles_markdown_shapes():
    """The extractor itself: prompts, paths, comments, continuations, multi-line spans, synopses."""
    lines = [
        "Text `manual-deploy history --env prod --app",
        "ingest-core` more, and `manual-deploy` alone, `git push`.",
        "",
        "    $ manual-deploy tag --env prod   # a comment",
        "    manual-deploy apply --env ENV [--app APP ...]",
        "                        [--yes]",
        "    manual-deploy status --env prod",
        "",
        "```sh",
        "manual-deploy deploy --env prod \\",
        "    --yes",
        "```",
        "### `manual-deploy apply`",
        "| `.venv/bin/manual-deploy --help` | x |",
        "",
        "    manual-deploy status --env prod -o json | jq .   # a pipe is not a synopsis",
        "    manual-deploy sandbox up|env|down [--dir DIR]",
    ]
    mask = _code_mask(lines)
    got = [(d.lineno, d.kind, d.text) for d in sorted(
        _code_lines("X", lines, mask) + _inline_lines("X", lines, mask), key=lambda d: d.lineno)]
    assert got == [
        (1, "command", "manual-deploy history --env prod --app ingest-core"),
        (4, "command", "manual-deploy tag --env prod"),
        (5, "synopsis", "manual-deploy apply --env ENV [--app APP ...] [--yes]"),
        (7, "command", "manual-deploy status --env prod"),
        (10, "command", "manual-deploy deploy --env prod --yes"),
        (13, "reference", "manual-deploy apply"),
        (14, "command", "manual-deploy --help"),
        (16, "command", "manual-deploy status --env prod -o json | jq ."),
        (17, "synopsis", "manual-deploy sandbox up|env|down [--dir DIR]"),
    ]
    assert shell_argv(got[-2][2]) == ["manual-deploy", "status", "--env", "prod", "-o", "json"]


def test_validator_rejects_drift():
    """The checks bite: wrong options, missing required options, wrong arity, typos."""
    assert parse_error(["apply", "--env", "prod", "--replicas", "N"]) is None  # placeholder value
    assert parse_error(["status", "--env", "prod", "-o", "json"]) is None  # global option after the command
    assert "No such option" in parse_error(["tag", "--dry-run"])
    assert "env" in parse_error(["apply"]).lower()  # required --env missing
    assert "No such command" in parse_error(["aply", "--env", "prod"])
    assert "twice" in parse_error(["apply", "--env", "prod", "--env", "dev"])
    assert "no such option" in synopsis_problems("manual-deploy tag [--dry-run]")[0]
    assert "is a flag" in synopsis_problems("manual-deploy apply --env ENV [--yes Y]")[0]
    assert "takes a value" in synopsis_problems("manual-deploy apply --env ENV [--tag]")[0]
    assert "repeatable" in synopsis_problems("manual-deploy apply --env ENV [--tag TAG ...]")[0]
    assert "does not parse" in synopsis_problems("manual-deploy apply [--env ENV]")[0]
    assert synopsis_problems("manual-deploy apply --env ENV [--app APP ...] [--image REF | --tag TAG]") == []
    assert synopsis_problems("manual-deploy apply -o text|json --env ENV") == []
    assert "not a command" in synopsis_problems("manual-deploy aply --env ENV [--yes]")[0]


def _section(text: str, heading: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1 : end]


def test_readme_fresh_machine_is_make_demo_and_make_test():
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), "## On a fresh machine")
    mask = _code_mask(section)
    commands = [_strip_comment(line.strip()) for line, code in zip(section, mask) if code and line.strip()]
    assert sorted(commands) == ["make demo", "make test"], commands
    mentioned = set(re.findall(r"\bmake [\w-]+", "\n".join(section)))
    assert mentioned == {"make demo", "make test"}, mentioned
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert re.search(rf"^{target}\s*:", makefile, re.M), f"Makefile has no `{target}` target"


def test_every_cli_command_is_in_the_readme(cli):
    commands = list(_commands(_group()))
    help_text = cli("--help").stdout
    assert commands and all(name in help_text for name in commands), (commands, help_text)

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\|\s*`([\w-]+)[^`]*`\s*\|", readme, re.M))
    invoked = {d.text.split()[1] for d in ALL_LINES if d.file == "README.md" and len(d.text.split()) > 1}
    missing_table = [name for name in commands if name not in table]
    missing_usage = [name for name in commands if name not in invoked]
    assert not missing_table, f"README.md's command table lacks: {missing_table}"
    assert not missing_usage, f"README.md shows no `manual-deploy <command>` line for: {missing_usage}"
    assert table <= set(commands), f"README.md's command table lists commands the CLI lacks: {sorted(table - set(commands))}"
