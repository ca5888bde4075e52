"""Tag the commit to ship, the way the team's `git release` alias or GitLab's Release job would.

Two name styles exist in the wild and quay.io builds both:
- default: the commit's short SHA as `git rev-parse --short` prints it (the `git release` alias);
- release: `<env>-<sha8>-<dd-mm-YYYY>.<epoch>` (GitLab's `Release <env>` job, UTC date).
Re-running is safe: a suitable tag already at the commit is reused, a clashing one is refused.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from manual_deploy import gitops, images, state
from manual_deploy.config import Config
from manual_deploy.errors import OperationFailed, Refused, UsageError


class Reporter(Protocol):
    def step(self, message: str) -> None: ...
    def success(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


@dataclass(frozen=True)
class TagRequest:
    repo: Path = Path(".")
    commit: str = "HEAD"
    remote: str = "origin"
    env: str | None = None
    app: str | None = None
    reason: str | None = None
    allow_unmerged: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class TagResult:
    app: str
    commit: str
    tag: str
    remote: str
    env: str | None
    reused: bool
    pushed: bool
    unmerged: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _newest(tags: list[gitops.RemoteTag], env: str, sha: str) -> gitops.RemoteTag | None:
    """The most recent release tag of this env and commit among `tags`."""
    dated = [(epoch, t) for t in tags if (epoch := images.release_tag_epoch(t.name, env, sha)) is not None]
    return max(dated, key=lambda pair: pair[0], default=(None, None))[1]


def _resolve_app(config: Config, request: TagRequest, url: str) -> str:
    if request.app:
        return config.app(request.app).name
    inferred = gitops.app_from_url(url)
    try:
        return config.app(inferred).name
    except UsageError as exc:
        raise UsageError(
            f"app {inferred!r} (from the remote URL) is not a configured app",
            hint=f"pass --app NAME; {exc.hint}",
        ) from None


def _check_merged(repo, request: TagRequest, config: Config, sha: str, out: Reporter) -> str | None:
    """Refuse a commit that is not on the env's source branch (or on no remote branch at all).

    Returns a warning text when --allow-unmerged overrides the refusal, else None.
    """
    remote = request.remote
    if request.env:
        branch = config.environment(request.env).source_branch
        if not gitops.remote_branch_exists(repo, remote, branch):
            problem = f"{remote} has no branch {branch!r} (the source branch of {request.env})"
        elif gitops.is_ancestor(repo, sha, f"refs/remotes/{remote}/{branch}"):
            out.step(f"commit {sha[:8]} is on {remote}/{branch}")
            return None
        else:
            problem = f"commit {sha[:8]} is not on {remote}/{branch}, the source branch of {request.env}"
        hint = f"merge it into {branch} and push first, or pass --allow-unmerged to tag it anyway"
    else:
        branches = gitops.remote_branches_containing(repo, remote, sha)
        if branches:
            out.step(f"commit {sha[:8]} is on {', '.join(f'{remote}/{b}' for b in branches[:3])}")
            return None
        problem = f"commit {sha[:8]} is on no branch of {remote}"
        hint = "push the branch first, or pass --allow-unmerged to tag it anyway"
    if not request.allow_unmerged:
        raise Refused(problem, hint=hint)
    warning = f"{problem}; tagging anyway because of --allow-unmerged"
    out.warn(warning)
    return warning


def _message(app: str, sha: str, request: TagRequest, who: str, warning: str | None) -> str:
    lines = [
        f"manual-deploy: {app} at {sha}",
        "",
        f"env: {request.env or '-'}",
        f"by: {who} on {socket.gethostname()}",
        f"at: {request.now.astimezone(timezone.utc).isoformat(timespec='seconds')}",
        f"reason: {request.reason or '-'}",
    ]
    if warning:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines) + "\n"


@dataclass
class _Plan:
    name: str
    on_remote: bool
    local: gitops.RemoteTag | None


def _plan(repo, request: TagRequest, sha: str, remote_tags: dict[str, gitops.RemoteTag]) -> _Plan:
    """Choose the tag name: reuse one already at the commit, refuse a name taken by another."""
    if request.env:
        at_commit = [t for t in remote_tags.values() if t.commit == sha]
        existing = _newest(at_commit, request.env, sha)
        if existing:
            return _Plan(existing.name, True, gitops.local_tag(repo, existing.name))
        local = _newest([t for t in gitops.local_tags(repo, f"{request.env}-{sha[:8]}-*") if t.commit == sha], request.env, sha)
        if local:
            return _Plan(local.name, False, local)
        name = images.release_tag(request.env, sha, request.now)
    else:
        name = gitops.short_sha(repo, sha)
    on_remote = remote_tags.get(name)
    local = gitops.local_tag(repo, name)
    for where, tag in ((request.remote, on_remote), ("the local repository", local)):
        if tag and tag.commit != sha:
            raise Refused(
                f"tag {name} already exists in {where} and points at {tag.commit[:8]}, not {sha[:8]}",
                hint=f"inspect it with `git show {name}`; remove it only if you are sure it is stale",
            )
    return _Plan(name, on_remote is not None, local)


def tag_commit(config: Config, request: TagRequest, out: Reporter) -> TagResult:
    """Make sure the remote has a suitable tag at the commit; create and push it if needed."""
    repo = gitops.open_repo(request.repo)
    url = gitops.remote_url(repo, request.remote)
    app = _resolve_app(config, request, url)
    if request.env:
        config.environment(request.env)
    out.step(f"fetching {request.remote}")
    gitops.fetch(repo, request.remote)
    sha = gitops.resolve_commit(repo, request.commit)
    out.step(f"{app}: commit {sha[:8]} {gitops.commit_subject(repo, sha)!r}")
    warning = _check_merged(repo, request, config, sha, out)
    remote_tags = gitops.remote_tags(repo, request.remote)
    plan = _plan(repo, request, sha, remote_tags)

    created = False
    pushed = False
    if plan.on_remote:
        out.success(f"tag {plan.name} already on {request.remote} at {sha[:8]}: reused, nothing pushed")
    else:
        if plan.local:
            out.step(f"reusing local tag {plan.name} (already at {sha[:8]})")
        else:
            gitops.create_annotated_tag(repo, plan.name, sha, _message(app, sha, request, gitops.identity(repo), warning))
            created = True
            out.step(f"created annotated tag {plan.name}")
        _push_and_confirm(repo, request.remote, plan.name, sha, created, out)
        pushed = True
        out.success(f"pushed tag {plan.name} to {request.remote}; ls-remote confirms it at {sha[:8]}")

    result = TagResult(
        app=app,
        commit=sha,
        tag=plan.name,
        remote=request.remote,
        env=request.env,
        reused=not created,
        pushed=pushed,
        unmerged=warning is not None,
    )
    state.record(gitops.git_dir(repo), "tag", {**result.as_dict(), "reason": request.reason})
    return result


def _push_and_confirm(repo, remote: str, name: str, sha: str, created: bool, out: Reporter) -> None:
    """Push one tag and prove the remote has it; undo our local tag if that fails."""
    try:
        out.step(f"pushing refs/tags/{name} to {remote}")
        gitops.push_tag(repo, remote, name)
        seen = gitops.remote_tags(repo, remote).get(name)
        if seen is None or seen.commit != sha:
            where = f"at {seen.commit[:8]}" if seen else "missing"
            raise OperationFailed(f"after the push, {remote} shows tag {name} {where}, expected {sha[:8]}")
    except BaseException as exc:
        if created:
            gitops.delete_local_tag(repo, name)
            if isinstance(exc, OperationFailed):
                exc.hint = f"the local tag {name} was removed again, nothing is left behind; fix the cause and re-run"
        raise
