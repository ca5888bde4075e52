"""The secrets users hand us through the environment: optional, so missing ones warn. Values are never shown."""

from __future__ import annotations

from typing import Mapping

from manual_deploy.doctor.report import OK, WARN, Finding


def gitlab_token_check(url: str, environ: Mapping[str, str]) -> Finding:
    """Optional during the outage; needed afterwards, when `gitlab-sync` records the deploys in GitLab."""
    if environ.get("GITLAB_TOKEN"):
        return Finding("GITLAB_TOKEN", OK, "set")
    return Finding("GITLAB_TOKEN", WARN, f"not set: deploys cannot be recorded in GitLab ({url}) until it is",
                   "export GITLAB_TOKEN=<personal access token with the api scope>, then `manual-deploy gitlab-sync`")


def credential_checks(environ: Mapping[str, str]) -> list[Finding]:
    """Optional: anonymous access works for public repositories."""
    token = Finding("QUAY_TOKEN", OK, "set") if environ.get("QUAY_TOKEN") else Finding(
        "QUAY_TOKEN", WARN, "not set: wait-image cannot follow builds of a private repository",
        "export QUAY_TOKEN=<quay OAuth token with repo:read> (only for private repositories)",
    )
    return [token, _quay_login_check(environ)]


def _quay_login_check(environ: Mapping[str, str]) -> Finding:
    user, password = bool(environ.get("QUAY_USERNAME")), bool(environ.get("QUAY_PASSWORD"))
    if user and password:
        return Finding("quay login", OK, "QUAY_USERNAME and QUAY_PASSWORD set")
    state = lambda flag: "set" if flag else "not set"  # noqa: E731
    return Finding(
        "quay login", WARN, f"QUAY_USERNAME {state(user)}, QUAY_PASSWORD {state(password)}: anonymous registry reads only",
        "export QUAY_USERNAME=<robot account> QUAY_PASSWORD=<robot token> (only for private repositories)",
    )
