"""What apply reaches over the network besides the cluster: the registry, the quay API and the deploy-config repo."""

from __future__ import annotations

import shutil
import subprocess
from typing import Mapping

from manual_deploy.config import Config
from manual_deploy.doctor.report import FAIL, OK, Finding
from manual_deploy.doctor.runner import CHECK_TIMEOUT_S, Probe, last_line, run_bounded
from manual_deploy.kube import error_line
from manual_deploy.redact import redact

HTTP_TIMEOUT = (2.5, 2.5)  # (connect, read) for requests: one HTTP check stays within ~5 s


def network_probes(config: Config, envs: list[str], environ: Mapping[str, str]) -> list[Probe]:
    registry, repo = config.registry, config.deployment_repo
    return [
        Probe("registry", lambda: [registry_check(registry.url, config.source)], _reach_hint(registry.url + "/v2/", config.source)),
        Probe("quay API", lambda: [quay_api_check(registry.api_url, config.source)],
              _reach_hint(registry.api_url + "/discovery", config.source)),
        Probe("deploy-config repo", lambda: deploy_repo_checks(config, envs, environ), _ls_remote_hint(repo.url, config.source)),
    ]


def _reach_hint(url: str, source: str) -> str:
    return f"check the network/VPN and the URL in {source}: `curl -sS -o /dev/null -w '%{{http_code}}\\n' {url}`"


def http_status(url: str) -> int:
    """One GET, no retries, no credentials (reachability needs none), bounded by HTTP_TIMEOUT."""
    import requests

    response = requests.get(url, timeout=HTTP_TIMEOUT, allow_redirects=False, headers={"User-Agent": "manual-deploy doctor"})
    response.close()
    return response.status_code


def registry_check(url: str, source: str) -> Finding:
    """GET /v2/: 200 (open) and 401 (asks for a token) both mean a registry is answering."""
    import requests

    probe = f"{url}/v2/"
    try:
        status = http_status(probe)
    except requests.RequestException as exc:
        return Finding("registry", FAIL, f"{probe} unreachable: {error_line(exc)}", _reach_hint(probe, source))
    if status in (200, 401):
        return Finding("registry", OK, f"{probe} answers (HTTP {status})")
    return Finding("registry", FAIL, f"{probe} answered HTTP {status}, not a registry v2 API", _reach_hint(probe, source))


def quay_api_check(api_url: str, source: str) -> Finding:
    """Any HTTP answer will do: wait-image copes with 401/403/404 there, not with no answer at all."""
    import requests

    probe = f"{api_url}/discovery"
    try:
        status = http_status(probe)
    except requests.RequestException as exc:
        return Finding("quay API", FAIL, f"{probe} unreachable: {error_line(exc)}", _reach_hint(probe, source))
    return Finding("quay API", OK, f"{probe} answers (HTTP {status})")


def _ls_remote_hint(url: str, source: str) -> str:
    return f"check the network/VPN and deployment_repo.url in {source}: `git ls-remote --heads {redact(url)}`"


def _git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Never let git (or ssh under it) wait for a password or a host-key answer nobody will type."""
    env = dict(environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", f"ssh -o BatchMode=yes -o ConnectTimeout={int(CHECK_TIMEOUT_S)}")
    return env


def deploy_repo_checks(config: Config, envs: list[str], environ: Mapping[str, str]) -> list[Finding]:
    """The deploy-config repo answers, and each env's config_branch is there (one ls-remote for all)."""
    url, source = config.deployment_repo.url, config.source
    name, hint = "deploy-config repo", _ls_remote_hint(url, source)
    if url.startswith("-"):
        return [Finding(name, FAIL, f"deployment_repo.url {url!r} looks like an option", f"fix deployment_repo.url in {source}")]
    git = shutil.which("git")
    if git is None:
        return [Finding(name, FAIL, "cannot ask: git was not found on PATH", "install git, then run doctor again")]
    try:
        proc = run_bounded([git, "ls-remote", "--heads", url], timeout=CHECK_TIMEOUT_S, env=_git_env(environ))
    except subprocess.TimeoutExpired:
        return [Finding(name, FAIL, f"{redact(url)} gave no answer within {CHECK_TIMEOUT_S:g} s", hint)]
    if proc.returncode != 0:
        reason = last_line(proc.stderr) or f"git exited with status {proc.returncode}"
        return [Finding(name, FAIL, f"{redact(url)}: {redact(reason)}", hint)]
    heads = _heads(proc.stdout)
    found = [Finding(name, OK, f"{redact(url)} answers ({len(heads)} branches)")]
    return found + [_branch_check(env, config.environments[env].config_branch, heads, source) for env in envs]


def _heads(ls_remote: str) -> dict[str, str]:
    heads = {}
    for line in ls_remote.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    return heads


def _branch_check(env: str, branch: str, heads: dict[str, str], source: str) -> Finding:
    name = f"config branch {env}"
    if branch in heads:
        return Finding(name, OK, f"{branch} at {heads[branch][:8]}")
    known = ", ".join(sorted(heads)[:10]) or "none"
    return Finding(name, FAIL, f"branch {branch!r} is not in the deploy-config repo (branches: {known})",
                   f"fix environments.{env}.config_branch in {source}, or pass --config-ref to apply")
