"""`deploy`: tag → wait-image → apply in one command that can be re-run after any failure.

Each step records its completion in the checkout's state; a re-run skips what is done and says
so (a new commit, or --restart, starts over). All three steps are idempotent anyway — resuming
just saves the minutes an engineer under pressure does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manual_deploy import gitops, state
from manual_deploy.config import Config
from manual_deploy.console import Output
from manual_deploy.apply import run_apply
from manual_deploy.apply_plan import ApplyRequest, validate_flags
from manual_deploy.errors import UsageError
from manual_deploy.kube import resolve_target
from manual_deploy.wait_image import WaitRequest, wait_for_image
from manual_deploy.tag import TagRequest, tag_commit

STEPS = ("tag", "wait-image", "apply")


@dataclass(frozen=True)
class DeployRequest:
    env: str
    repo: str = "."
    commit: str = "HEAD"
    remote: str = "origin"
    app: str | None = None
    reason: str = ""
    allow_unmerged: bool = False
    image_timeout_s: float = 45 * 60
    no_build_timeout_s: float = 10 * 60
    start_build: bool = False  # wait-image --start-build
    restart: bool = False
    apply: ApplyRequest | None = None  # the apply flags (env/apps/image filled in here)


def _done_steps(recorded: dict, request: DeployRequest, commit: str) -> list[str]:
    """Steps finished by an earlier run for this env and this very commit."""
    progress = recorded.get("deploy") or {}
    if request.restart or progress.get("env") != request.env or progress.get("commit") != commit:
        return []
    done = [s for s in progress.get("done", []) if s in STEPS and s != "apply"]  # apply always runs (no-op if live)
    tag = (recorded.get("tag") or {}).get("tag")
    if "wait-image" in done and (recorded.get("image") or {}).get("tag") != tag:
        done.remove("wait-image")
    return done


def _mark(git_dir, request: DeployRequest, commit: str, done: list[str]) -> None:
    state.record(git_dir, "deploy", {"env": request.env, "commit": commit, "done": done})


def run_deploy(config: Config, request: DeployRequest, out: Output) -> dict[str, Any]:
    config.environment(request.env)
    apply_flags = request.apply or ApplyRequest(env=request.env)
    validate_flags(apply_flags)  # a bad apply flag must fail before a tag is pushed
    # the cluster and its credentials too: an expired login found after the tag and a 10-minute build
    # would leave the chain half-done at the last step
    resolve_target(config, request.env, kubeconfig=apply_flags.kubeconfig, context=apply_flags.kube_context)
    repo = gitops.open_repo(request.repo)
    git_dir = gitops.git_dir(repo)
    commit = gitops.resolve_commit(repo, request.commit)
    recorded = state.load(git_dir)
    done = _done_steps(recorded, request, commit)
    resumed_from = next(s for s in STEPS if s not in done) if done else None
    if done:
        nxt = next(s for s in STEPS if s not in done)
        out.info(f"resuming: {', '.join(done)} already done for {commit[:8]}; continuing at {nxt} (--restart starts over)")
    elif recorded.get("deploy") and not request.restart:
        out.step("starting a new deploy (the recorded one was for another commit or env)")

    if "tag" not in done:
        out.info("── step 1/3: tag")
        result = tag_commit(
            config,
            TagRequest(repo=request.repo, commit=commit, remote=request.remote, env=request.env, app=request.app,
                       reason=request.reason, allow_unmerged=request.allow_unmerged),
            out,
        )
        done = ["tag"]
        _mark(git_dir, request, commit, done)
        out.info(f"  tag {result.tag}")
    recorded = state.load(git_dir)
    app = request.app or recorded["tag"]["app"]
    if request.app and request.app != recorded["tag"].get("app"):
        raise UsageError(f"the recorded tag is for {recorded['tag'].get('app')}, not {request.app}", hint="pass --restart")
    if "wait-image" not in done:
        out.info("── step 2/3: wait-image")
        waited = wait_for_image(
            config, WaitRequest(repo=request.repo, app=app, tag=recorded["tag"]["tag"], timeout=request.image_timeout_s,
                                no_build_timeout=request.no_build_timeout_s, start_build=request.start_build), out,
        )
        done = [*done, "wait-image"]
        _mark(git_dir, request, commit, done)
        out.info(f"  image {waited.reference}")
    out.info("── step 3/3: apply")
    base = request.apply or ApplyRequest(env=request.env)
    apply_request = ApplyRequest(**{**base.__dict__, "env": request.env, "apps": (app,), "image": None, "tag": None,
                                    "repo": request.repo, "reason": request.reason or base.reason, "command": "deploy"})
    summary = run_apply(config, apply_request, out)
    _mark(git_dir, request, commit, [*done, "apply"])
    return {**summary, "commit": commit, "resumed_from": resumed_from}
