"""Strict patterns for every name that reaches git, helm or a URL.

Checked before use so that a typo or a hostile value becomes a clear usage error instead of an
option injected into a subprocess or a path outside the expected place.
"""

from __future__ import annotations

import re

from manual_deploy.errors import UsageError

# Kubernetes/helm release names and DNS labels: lower-case alphanumerics and '-'.
APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,51}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# Docker tag grammar; it is also a valid git tag name once '..' and '.lock' are excluded below.
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Revision expressions users type: SHAs, branches, HEAD~2, origin/master, v1.2^{commit}.
GIT_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./~^@{}+-]{0,199}$")
BRANCH_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$")
# A whole commit id, as git prints it and GitLab's deployment record needs it.
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def _check(kind: str, value: str, pattern: re.Pattern[str], extra_ok: bool = True) -> str:
    if not isinstance(value, str) or not pattern.match(value) or not extra_ok:
        raise UsageError(f"invalid {kind}: {value!r}", hint=f"a {kind} must match {pattern.pattern}")
    return value


def app_name(value: str) -> str:
    return _check("app name", value, APP_NAME)


def env_name(value: str) -> str:
    return _check("environment name", value, ENV_NAME)


def image_tag(value: str) -> str:
    return _check("tag", value, IMAGE_TAG, ".." not in value and not value.endswith(".lock"))


def remote_name(value: str) -> str:
    return _check("remote name", value, REMOTE_NAME)


def git_rev(value: str) -> str:
    return _check("git revision", value, GIT_REV, ".." not in value and "@{-" not in value)


def branch_name(value: str) -> str:
    ok = ".." not in value and not value.endswith((".lock", "/", "."))
    return _check("branch name", value, BRANCH_NAME, ok)
