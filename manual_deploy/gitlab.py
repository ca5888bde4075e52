"""The GitLab API v4 calls behind `gitlab-sync`: a project's deployment records and its tags.

Each answer GitLab can give maps to one exception that says what it means for the user: unreachable
or 5xx (try again later, nothing lost), 401 (the token), 403 (role or protected environment), 404
(the project path), 400 (GitLab's copy of the repository lacks the commit or tag). The token goes
only into the PRIVATE-TOKEN header; no message carries it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import requests

from manual_deploy.errors import OperationFailed, Refused
from manual_deploy.redact import redact
from manual_deploy.registry import make_session

TOKEN_ENV = "GITLAB_TOKEN"
TIMEOUT = (3.05, 10.0)
TOKEN_HINT = (f"create a personal access token with the `api` scope on GitLab (Preferences → Access tokens) "
              f"and `export {TOKEN_ENV}=…`; then run `manual-deploy gitlab-sync`")



def gitlab_slug(text: str) -> str:
    """GitLab's *_SLUG: lower-case, everything but a-z0-9 → '-', at most 63 chars, no '-' at the ends.

    The chart's `gitlab_app`/`gitlab_env` annotations must match what GitLab's own deploy job wrote."""
    slug = re.sub(r"[^a-z0-9]", "-", text.lower())[:63]
    return slug.strip("-")

class GitLabUnreachable(OperationFailed):
    """Connection refused, timed out, or a 5xx: GitLab is (still) down; try again later."""


class GitLabRefused(Refused):
    """401, 403 or 404: a fix on the user's side (token, role, project path) is needed first."""

    def __init__(self, message: str, *, status: int, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class GitLabRejected(OperationFailed):
    """400: GitLab refused the record itself, e.g. its copy of the repository lacks the commit."""

    def __init__(self, message: str, *, problems: dict[str, list[str]]):
        super().__init__(message)
        self.problems = problems


def token_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    return environ.get(TOKEN_ENV) or None


def project_id(path: str) -> str:
    """`hca/ingest-core` → `hca%2Fingest-core`: GitLab takes the URL-encoded path wherever it takes an id."""
    return quote(path, safe="")


def _problems(body: Any) -> dict[str, list[str]]:
    """GitLab's 400 bodies: `{"message": {"sha": ["…"]}}` (model validation) or `{"error": "sha is missing"}`."""
    if not isinstance(body, dict):
        return {}
    message = body.get("message")
    if isinstance(message, dict):
        return {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in message.items()}
    text = body.get("error") or message
    return {"request": [str(text)]} if text else {}


@dataclass
class GitLabClient:
    url: str
    token: str
    session: requests.Session | None = None
    timeout: tuple[float, float] = TIMEOUT

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if self.session is None:
            self.session = make_session()

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def _call(self, method: str, path: str, *, params: dict | None = None, body: dict | None = None,
              project: str = "", action: str = "") -> Any:
        try:
            response = self.session.request(method, f"{self.url}/api/v4{path}", params=params, json=body, timeout=self.timeout,
                                            headers={"PRIVATE-TOKEN": self.token, "Accept": "application/json"})
        except requests.RequestException as exc:
            raise GitLabUnreachable(redact(f"GitLab {self.host} is unreachable ({type(exc).__name__})", self.token)) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise GitLabUnreachable(f"GitLab {self.host} answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 401:
            raise GitLabRefused(f"GitLab {self.host} refused {TOKEN_ENV} (401 Unauthorized): it is wrong, expired or revoked",
                                status=401, hint=TOKEN_HINT)
        if response.status_code == 403:
            raise GitLabRefused(f"GitLab {self.host} refused to {action or method} in {project} (403 Forbidden)", status=403)
        if response.status_code == 404:
            said = data.get("message") if isinstance(data, dict) else None
            raise GitLabRefused(f"GitLab {self.host}: {said or '404 Not Found'} for {project or path}", status=404)
        if response.status_code == 400:
            problems = _problems(data)
            said = "; ".join(f"{field} {'; '.join(texts)}" for field, texts in problems.items()) or "400 Bad Request"
            raise GitLabRejected(f"GitLab {self.host} rejected the record for {project}: {said}", problems=problems)
        if response.status_code not in (200, 201):
            raise OperationFailed(f"GitLab {self.host} answered HTTP {response.status_code} for {method} {path}")
        return data

    def deployments(self, project: str, environment: str, per_page: int = 100) -> list[dict[str, Any]]:
        """The newest `per_page` deployment records of one environment, newest first."""
        data = self._call("GET", f"/projects/{project_id(project)}/deployments", project=project, action="list deployments",
                          params={"environment": environment, "order_by": "created_at", "sort": "desc", "per_page": per_page})
        return [d for d in data or [] if isinstance(d, dict)]

    def create_deployment(self, project: str, *, environment: str, sha: str, ref: str, tag: bool, status: str) -> dict[str, Any]:
        return self._call("POST", f"/projects/{project_id(project)}/deployments", project=project,
                          action=f"record a deployment to {environment}",
                          body={"environment": environment, "sha": sha, "ref": ref, "tag": tag, "status": status})

    def update_deployment(self, project: str, deployment_id: int, status: str) -> dict[str, Any]:
        return self._call("PUT", f"/projects/{project_id(project)}/deployments/{int(deployment_id)}", project=project,
                          action=f"update deployment {deployment_id}", body={"status": status})

    def commit_of(self, project: str, ref: str) -> str | None:
        """The full SHA `ref` (a tag, or a short SHA that quay tagged an image with) names in GitLab's copy of
        the repository; None when that copy has no such ref."""
        try:
            data = self._call("GET", f"/projects/{project_id(project)}/repository/commits/{quote(ref, safe='')}",
                              project=project, action="read commits")
        except GitLabRefused as exc:
            if exc.status == 404 and "Commit" in exc.message:
                return None
            raise
        return data.get("id") if isinstance(data, dict) else None
