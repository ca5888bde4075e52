"""The deploy-config repository (ebi-ait/ingest-kube-deployment): fetch it, read it, never run it.

GitLab's deploy job clones one branch and *sources* bash files; those files call
`aws sts get-caller-identity` when sourced. We only parse their `NAME=value` lines, and keep a
shallow clone in the user cache so the next deploy needs only a small fetch.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from manual_deploy import paths, validate
from manual_deploy.errors import OperationFailed, Refused, UsageError
from manual_deploy.redact import redact

_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
FETCH_TIMEOUT_S = 300
PROBE_TIMEOUT_S = 60


def parse_env_file(text: str) -> dict[str, str]:
    """`NAME=value` assignments of a bash config file, without executing anything.

    Skipped: comments, `set -a/+a`, `source`/`.` lines, command substitutions (`$(…)`, backticks)
    and values referring to variables not defined earlier in the same file.
    """
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        match = _ASSIGNMENT.match(line)
        if not match or "$(" in line or "`" in line:
            continue
        name, value = match.groups()
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            continue
        if len(words) > 1:
            continue  # `A=b c` runs command c with A set: not an assignment we can honour
        resolved = _resolve(words[0] if words else "", values)
        if resolved is not None:
            values[name] = resolved
    return values


def _resolve(value: str, known: dict[str, str]) -> str | None:
    """Expand `$NAME`/`${NAME}` from earlier lines; None for anything else bash would expand."""
    if "$" in _REFERENCE.sub("", value):
        return None  # ${X#*_}, $1, $$ …: shell expansions we do not emulate
    unresolved = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal unresolved
        name = match.group(1) or match.group(2)
        if name not in known:
            unresolved = True
            return ""
        return known[name]

    result = _REFERENCE.sub(substitute, value)
    return None if unresolved else result


@dataclass(frozen=True)
class DeployConfig:
    """One checked-out revision of the deploy-config repo."""

    path: Path
    ref: str
    sha: str

    def _read(self, relpath: str) -> str:
        file = self.path / relpath
        try:
            return file.read_text()
        except FileNotFoundError:
            raise Refused(
                f"the deploy config at {self.sha[:8]} ({self.ref}) has no {relpath}",
                hint="check --config-ref / the env's config_branch",
            ) from None

    def replicas(self, env: str) -> dict[str, str]:
        return parse_env_file(self._read(f"config/replicas/environment_{env}"))

    def environment(self, env: str) -> dict[str, str]:
        return parse_env_file(self._read(f"config/environment_{env}"))

    def values_file(self, env: str) -> Path:
        path = self.path / "apps" / f"{env}.yaml"
        if not path.is_file():
            raise Refused(f"the deploy config at {self.sha[:8]} has no apps/{env}.yaml")
        return path

    def chart_dir(self, chart: str) -> Path:
        path = (self.path / chart).resolve()
        if self.path.resolve() not in path.parents or not (path / "Chart.yaml").is_file():
            raise Refused(f"the deploy config at {self.sha[:8]} has no chart {chart}/Chart.yaml")
        return path


def replica_count(config: DeployConfig, env: str, variable: str, override: int | None) -> int:
    """The replica count GitLab would pass; --replicas wins, a missing variable is refused."""
    if override is not None:
        if override < 0:
            raise UsageError(f"invalid --replicas {override}: a replica count cannot be negative",
                             hint="pass --replicas N with N 0 or more, or leave it out to use the config repo's count")
        return override
    relpath = f"config/replicas/environment_{env}"
    text = config._read(relpath)
    raw = parse_env_file(text).get(variable)
    if raw is None:
        skipped = _unparsed_assignment(text, variable)
        if skipped:
            raise Refused(
                f"{variable} in {relpath} at {config.sha[:8]} is set by {skipped}, which manual-deploy never runs",
                hint=f"write a plain number ({variable}=2) in ingest-kube-deployment, or pass --replicas N",
            )
        raise Refused(
            f"{variable} is not set in {relpath} at {config.sha[:8]}",
            hint="add it to ingest-kube-deployment, or pass --replicas N",
        )
    if not raw.isdigit():
        raise Refused(
            f"{variable}={raw!r} in {relpath} at {config.sha[:8]} is not a whole number",
            hint=f"write a count of 0 or more ({variable}=2) in ingest-kube-deployment, or pass --replicas N",
        )
    return int(raw)


def _unparsed_assignment(text: str, variable: str) -> str | None:
    """Why a line assigning `variable` was skipped by `parse_env_file` (it is never executed), or None."""
    for raw in text.splitlines():
        match = _ASSIGNMENT.match(raw.strip())
        if match and match.group(1) == variable:
            if "$(" in raw or "`" in raw:
                return "a command substitution"
            return "a value that needs the shell to expand it"
    return None


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise concurrent manual-deploy runs on one cache directory."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_path(url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return paths.cache_dir() / "deploy-config" / digest


def checkout(url: str, ref: str, *, cache: Path | None = None) -> DeployConfig:
    """A clean checkout of `ref` (branch, tag or commit SHA) of the repo at `url`, fetched shallowly.

    A cached checkout that is already clean and at the remote's commit for `ref` is used as it is
    (see `_current`); anything else is fetched, checked out and cleaned again.
    """
    validate.git_rev(ref)
    where = cache or cache_path(url)
    with _locked(where.parent / f"{where.name}.d"):
        sha = _current(where, url, ref)
        if sha is not None:
            return DeployConfig(path=where, ref=ref, sha=sha)
        return DeployConfig(path=where, ref=ref, sha=_refresh(where, url, ref))


def _current(where: Path, url: str, ref: str) -> str | None:
    """The cached checkout's commit when it is clean and is what `ref` names on the remote now, else None.

    Two plain git queries run side by side (`ls-remote` asks the server for one ref, no pack;
    `status` proves nothing in the tree was changed, added or left behind), instead of a fetch,
    checkout and clean. Without GitPython: its import alone costs more than both queries. Any doubt
    (no cache, an error, an ambiguous ref) → None, and the full refresh runs.
    """
    if not (where / ".git").is_dir():
        return None
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    status_argv = ["git", "-C", str(where), "status", "--porcelain=v2", "--branch", "--untracked-files=all", "--ignored=matching"]
    remote_argv = None if validate.FULL_SHA.match(ref) else ["git", "ls-remote", "--", url, f"refs/heads/{ref}", f"refs/tags/{ref}",
                                                              f"refs/tags/{ref}^{{}}"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
             for argv in (status_argv, remote_argv) if argv]
    try:
        outputs = [proc.communicate(timeout=PROBE_TIMEOUT_S)[0] for proc in procs]
    except subprocess.TimeoutExpired:
        return None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(proc.returncode != 0 for proc in procs):
        return None
    head = _clean_head(outputs[0])
    wanted = ref if remote_argv is None else _remote_commit(outputs[1], ref)
    return head if head is not None and head == wanted else None


def _clean_head(porcelain: str) -> str | None:
    """HEAD's commit from `git status --porcelain=v2 --branch`, or None if any path is listed."""
    head = None
    for line in porcelain.splitlines():
        if line.startswith("# branch.oid "):
            head = line.split()[2]
        elif not line.startswith("#"):
            return None
    return head if head and validate.FULL_SHA.match(head) else None


def _remote_commit(listing: str, ref: str) -> str | None:
    """The commit `ref` names in an ls-remote listing: a branch, else a tag (peeled); None if unclear."""
    refs = {name: sha for sha, name in (line.split("\t", 1) for line in listing.splitlines() if "\t" in line)}
    branch = refs.get(f"refs/heads/{ref}")
    tag = refs.get(f"refs/tags/{ref}^{{}}") or refs.get(f"refs/tags/{ref}")
    if branch and tag and branch != tag:
        return None  # a branch and a tag of the same name: let the fetch decide, as it always has
    return branch or tag


def _refresh(where: Path, url: str, ref: str) -> str:
    """Fetch `ref` shallowly into the cache, check it out and remove anything else; the commit."""
    import git

    repo = git.Repo.init(where) if not (where / ".git").is_dir() else git.Repo(where)
    env = {"GIT_TERMINAL_PROMPT": "0"}
    try:
        with repo.git.custom_environment(**env):
            _fetch(repo, url, ref)
            repo.git.checkout("--force", "--detach", "FETCH_HEAD")
            repo.git.clean("-ffdxq")
    except _UnknownRef as exc:
        raise _unknown_ref(url, ref, str(exc)) from None
    except git.GitCommandError as exc:
        if _NO_REMOTE_REF in str(exc.stderr or ""):
            raise _unknown_ref(url, ref, "git: couldn't find remote ref") from None
        reason = redact(str(exc.stderr or "")).strip().splitlines()
        raise OperationFailed(
            f"cannot fetch {ref} of {redact(url)}: {reason[-1] if reason else exc.status}",
            hint="check the network/VPN, the repo URL in the config, and --config-ref",
        ) from None
    return repo.head.commit.hexsha


_NO_REMOTE_REF = "couldn't find remote ref"


class _UnknownRef(Exception):
    """The repository answered, and has no such ref: the user's input is wrong, not the network."""


def _unknown_ref(url: str, ref: str, why: str) -> UsageError:
    return UsageError(
        f"{ref!r} is not a branch, tag or commit of the deploy config repository {redact(url)} ({why})",
        hint=f"pass --config-ref with one that exists (`git ls-remote {redact(url)}` lists them), "
        "or fix the env's config_branch in the config",
    )


def _fetch(repo, url: str, ref: str) -> None:
    """Depth-1 fetch of a branch or tag; a bare SHA needs the history when the server forbids SHA wants."""
    import git

    try:
        repo.git.fetch("--quiet", "--depth", "1", "--no-tags", url, ref, kill_after_timeout=FETCH_TIMEOUT_S)
    except git.GitCommandError:
        if not _SHA.match(ref):
            raise
        deepen = ["--unshallow"] if repo.git.rev_parse("--is-shallow-repository") == "true" else []
        repo.git.fetch(
            "--quiet", "--no-tags", *deepen, url, "+refs/heads/*:refs/remotes/config/*", kill_after_timeout=FETCH_TIMEOUT_S
        )
        try:
            commit = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        except git.GitCommandError:
            raise _UnknownRef("no such commit on any of its branches") from None
        repo.git.update_ref("FETCH_HEAD", commit)
