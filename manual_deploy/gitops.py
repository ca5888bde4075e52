"""Git operations for manual-deploy, over GitPython.

Every revision, remote and tag name is validated before it reaches git, full ref names
(`refs/tags/...`) are used so a tag named like a short SHA is never ambiguous, and network
operations are bounded and never prompt.
"""

from __future__ import annotations

import getpass
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from manual_deploy import validate
from manual_deploy.errors import OperationFailed, TimedOut, UsageError
from manual_deploy.redact import redact

NETWORK_TIMEOUT_S = 120
# Never let git stop and wait for a password nobody will type.
_NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0"}


@dataclass(frozen=True)
class RemoteTag:
    name: str
    object: str  # the tag object for annotated tags, the commit for lightweight ones
    commit: str  # what it peels to


def open_repo(path: str | os.PathLike[str]) -> git.Repo:
    try:
        return git.Repo(Path(path), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UsageError(
            f"not a git repository: {Path(path).resolve()}",
            hint="run inside the app's checkout, or pass --repo PATH",
        ) from None


def git_dir(repo: git.Repo) -> Path:
    return Path(repo.git_dir)


def _git_error(exc: git.GitCommandError, action: str) -> OperationFailed | TimedOut:
    """Turn a git failure into one line that keeps git's own reason (hook output, rejection)."""
    if "did not complete in" in str(exc):
        return TimedOut(f"{action}: git gave no answer within {NETWORK_TIMEOUT_S} s", hint="check the network/VPN and retry")
    raw = redact(str(exc.stderr or "")).strip()
    if raw.startswith("stderr: '") and raw.endswith("'"):
        raw = raw[len("stderr: '") : -1]
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    useful = [
        line.removeprefix("remote:").strip() if line.startswith("remote:") else line
        for line in lines
        if line.startswith(("remote:", "!", "fatal:", "error:")) and "failed to push some refs" not in line
    ]
    reason = "; ".join(useful or lines[-2:]) or f"git exited with status {exc.status}"
    return OperationFailed(f"{action}: {reason}")


def remote_url(repo: git.Repo, remote: str) -> str:
    validate.remote_name(remote)
    names = [r.name for r in repo.remotes]
    if remote not in names:
        known = ", ".join(names) if names else "none"
        raise UsageError(
            f"git remote {remote!r} is not configured in {repo.working_dir}",
            hint=f"configured remotes: {known}; pass --remote NAME or `git remote add {remote} URL`",
        )
    return repo.remote(remote).url


def app_from_url(url: str) -> str:
    """`git@github.com:ebi-ait/ingest-core.git` -> `ingest-core`."""
    tail = url.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git")


def fetch(repo: git.Repo, remote: str) -> None:
    """Refresh remote-tracking branches only; tags are compared with ls-remote instead."""
    try:
        with repo.git.custom_environment(**_NO_PROMPT):
            repo.git.fetch("--prune", "--no-tags", "--quiet", remote, kill_after_timeout=NETWORK_TIMEOUT_S)
    except git.GitCommandError as exc:
        raise _git_error(exc, f"cannot fetch from {remote}") from None


def resolve_commit(repo: git.Repo, rev: str) -> str:
    validate.git_rev(rev)
    try:
        return repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}").strip()
    except git.GitCommandError:
        raise UsageError(
            f"unknown commit {rev!r} in {repo.working_dir}",
            hint="pass --commit with a SHA, branch or tag that exists (try `git log --oneline`)",
        ) from None


def short_sha(repo: git.Repo, sha: str) -> str:
    """git's own abbreviation, exactly as `git rev-parse --short` (and the `git release` alias) gives it."""
    return repo.git.rev_parse("--short", sha).strip()


def commit_subject(repo: git.Repo, sha: str) -> str:
    return repo.git.log("-1", "--format=%s", sha).strip()


def remote_branch_exists(repo: git.Repo, remote: str, branch: str) -> bool:
    validate.branch_name(branch)
    try:
        repo.git.rev_parse("--verify", "--quiet", f"refs/remotes/{remote}/{branch}")
        return True
    except git.GitCommandError:
        return False


def is_ancestor(repo: git.Repo, sha: str, ref: str) -> bool:
    try:
        repo.git.merge_base("--is-ancestor", sha, ref)
        return True
    except git.GitCommandError as exc:
        if exc.status == 1:
            return False
        raise _git_error(exc, f"cannot compare {sha[:8]} with {ref}") from None


def remote_branches_containing(repo: git.Repo, remote: str, sha: str) -> list[str]:
    out = repo.git.for_each_ref(f"refs/remotes/{remote}/", "--contains", sha, "--format=%(refname:strip=3)")
    return sorted(name for name in out.splitlines() if name and name != "HEAD")


def local_tag(repo: git.Repo, name: str) -> RemoteTag | None:
    validate.image_tag(name)
    out = repo.git.for_each_ref(f"refs/tags/{name}", "--format=%(objectname) %(*objectname)").strip()
    if not out:
        return None
    obj, _, peeled = out.partition(" ")
    return RemoteTag(name=name, object=obj, commit=peeled.strip() or obj)


def local_tags(repo: git.Repo, pattern: str) -> list[RemoteTag]:
    """Local tags whose name matches the fnmatch `pattern` (e.g. `prod-0ec3e066-*`)."""
    out = repo.git.for_each_ref(f"refs/tags/{pattern}", "--format=%(refname:strip=2) %(objectname) %(*objectname)")
    tags = []
    for line in out.splitlines():
        name, obj, *peeled = line.split(" ")
        tags.append(RemoteTag(name=name, object=obj, commit=(peeled[0] if peeled and peeled[0] else obj)))
    return tags


def remote_tags(repo: git.Repo, remote: str) -> dict[str, RemoteTag]:
    """All tags the remote has right now, with what each peels to."""
    try:
        with repo.git.custom_environment(**_NO_PROMPT):
            out = repo.git.ls_remote("--tags", remote, kill_after_timeout=NETWORK_TIMEOUT_S)
    except git.GitCommandError as exc:
        raise _git_error(exc, f"cannot list tags on {remote}") from None
    objects: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}"):
            peeled[name[:-3]] = sha
        else:
            objects[name] = sha
    return {name: RemoteTag(name, obj, peeled.get(name, obj)) for name, obj in objects.items()}


def _identity_env(repo: git.Repo) -> dict[str, str]:
    """Fall back to user@host when git has no identity: a missing user.email must not block a fix."""
    reader = repo.config_reader()
    if reader.has_option("user", "name") and reader.has_option("user", "email"):
        return {}
    user = getpass.getuser()
    return {
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", user),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", f"{user}@{socket.gethostname()}"),
    }


def identity(repo: git.Repo) -> str:
    env = _identity_env(repo)
    if env:
        return f"{env['GIT_COMMITTER_NAME']} <{env['GIT_COMMITTER_EMAIL']}>"
    reader = repo.config_reader()
    return f"{reader.get_value('user', 'name')} <{reader.get_value('user', 'email')}>"


def create_annotated_tag(repo: git.Repo, name: str, sha: str, message: str) -> RemoteTag:
    validate.image_tag(name)
    try:
        with tempfile.TemporaryFile() as stdin, repo.git.custom_environment(**_identity_env(repo)):
            stdin.write(message.encode())
            stdin.seek(0)
            repo.git.tag("--annotate", "--file=-", "--end-of-options", name, sha, istream=stdin)
    except git.GitCommandError as exc:
        raise _git_error(exc, f"cannot create tag {name}") from None
    created = local_tag(repo, name)
    assert created is not None
    return created


def delete_local_tag(repo: git.Repo, name: str) -> None:
    validate.image_tag(name)
    repo.git.update_ref("-d", f"refs/tags/{name}")


def push_tag(repo: git.Repo, remote: str, name: str) -> None:
    """Push exactly one tag, never branches or other tags."""
    validate.image_tag(name)
    ref = f"refs/tags/{name}"
    try:
        with repo.git.custom_environment(**_NO_PROMPT):
            repo.git.push(remote, f"{ref}:{ref}", kill_after_timeout=NETWORK_TIMEOUT_S)
    except git.GitCommandError as exc:
        raise _git_error(exc, f"push of tag {name} to {remote} was rejected") from None
