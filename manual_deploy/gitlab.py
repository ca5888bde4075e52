"""The GitLab API v4 calls behind `gitlab-sync`: a project's deployment records and its tags.

Each answer GitLab can give maps to one exception that says what it means for the user: unreachable
or 5xx (try again later, nothing lost), 401 (the token), 403 (role or protected environment), 404
(the project path), 400 (GitLab's copy of the repository lacks the commit or tag), and a 200 whose body
is not what was asked for (GitLab or a proxy answered something else) is never used. The token goes only
into the PRIVATE-TOKEN header; no message carries it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Mapping
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter, ValidationError

from manual_deploy.errors import OperationFailed, Refused
from manual_deploy.redact import redact
from manual_deploy.registry import make_session
from manual_deploy.validate import FULL_SHA

TOKEN_ENV = "GITLAB_TOKEN"
TIMEOUT = (3.05, 10.0)
TOKEN_HINT = (f"create a personal access token with the `api` scope on GitLab (Preferences → Access tokens) "
              f"and `export {TOKEN_ENV}=…`; then run `manual-deploy gitlab-sync`")
# After a POST/PUT GitLab may have taken the record: the next run reads GitLab's records first and adopts it.
INVALID_HINT = ("GitLab, or a proxy in front of it, answered something unexpected: open the URL in a browser to see "
                "what it answers; nothing was posted after it; run `manual-deploy gitlab-sync` again later (it reads "
                "GitLab's records first, so nothing is posted twice)")



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


class GitLabAnswerInvalid(OperationFailed):
    """A 200/201 whose body is not what was asked for: never used, so no made-up SHA or id reaches a record."""

    def __init__(self, method: str, url: str, shape: str, wrong: str):
        super().__init__(f"GitLab answered {method} {url} with a body that is not {shape}: {wrong}", hint=INVALID_HINT)
        self.url = url


class _Answer(BaseModel):
    """Only the fields gitlab-sync uses are checked; GitLab's other fields pass through untouched."""

    model_config = ConfigDict(extra="allow", strict=True)


class _Commit(_Answer):
    id: Annotated[str, StringConstraints(pattern=FULL_SHA.pattern)]


class _Deployment(_Answer):
    id: int
    iid: int | None = None


@dataclass(frozen=True)
class _Shape:
    """What an answer must be: its name in messages, its check, and how each checked field should look."""

    name: str
    check: TypeAdapter
    fields: dict[str, str]


COMMIT = _Shape("a commit", TypeAdapter(_Commit), {"id": "a 40-hex SHA"})
DEPLOYMENT = _Shape("a deployment", TypeAdapter(_Deployment), {"id": "an integer", "iid": "an integer"})
DEPLOYMENTS = _Shape("a list of deployments", TypeAdapter(list[_Deployment]), {"id": "an integer", "iid": "an integer"})


def _kind(value: Any) -> str:
    """A JSON value's type, in words."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "true/false" if isinstance(value, bool) else "a number"


def _wrong(shape: _Shape, error: dict[str, Any]) -> str:
    """Pydantic's first complaint in the user's words: "its id is 4242, not a 40-hex SHA"."""
    *item, name = error["loc"] or ("",)
    owner, owners = (f"item {item[0]}", f"item {item[0]}'s") if item else ("it", "its")
    if error["type"] == "missing":
        return f"{owner} has no {name}"
    if name in shape.fields:
        shown = json.dumps(error["input"], default=str)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"{owners} {name} is {shown}, not {shape.fields[name]}"
    if isinstance(name, int):  # an item of a list that is not an object
        return f"item {name} is {_kind(error['input'])}, not a JSON object"
    wanted = "a list" if error["type"] == "list_type" else "a JSON object"
    return f"it is {_kind(error['input'])}, not {wanted}"


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

    def _call(self, method: str, path: str, shape: _Shape, *, params: dict | None = None, body: dict | None = None,
              project: str = "", action: str = "") -> Any:
        """The JSON body of a 200/201, checked against `shape`; every other answer is its exception."""
        url = f"{self.url}/api/v4{path}"
        try:
            response = self.session.request(method, url, params=params, json=body, timeout=self.timeout,
                                            headers={"PRIVATE-TOKEN": self.token, "Accept": "application/json"})
        except requests.RequestException as exc:
            raise GitLabUnreachable(redact(f"GitLab {self.host} is unreachable ({type(exc).__name__})", self.token)) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise GitLabUnreachable(f"GitLab {self.host} answered HTTP {response.status_code}")
        try:
            data, parsed = response.json(), True
        except ValueError:
            data, parsed = None, False
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
        if not parsed:
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise GitLabAnswerInvalid(method, redact(url, self.token), shape.name, f"it is not JSON ({kind})")
        return self._checked(method, url, shape, data)

    def _checked(self, method: str, url: str, shape: _Shape, data: Any) -> Any:
        """`data` itself once it has the shape asked for; GitLabAnswerInvalid naming the URL otherwise."""
        try:
            shape.check.validate_python(data)
        except ValidationError as exc:
            raise GitLabAnswerInvalid(method, redact(url, self.token), shape.name,
                                      _wrong(shape, exc.errors()[0])) from None
        return data

    def deployments(self, project: str, environment: str, per_page: int = 100) -> list[dict[str, Any]]:
        """The newest `per_page` deployment records of one environment, newest first."""
        return self._call("GET", f"/projects/{project_id(project)}/deployments", DEPLOYMENTS, project=project,
                          action="list deployments",
                          params={"environment": environment, "order_by": "created_at", "sort": "desc", "per_page": per_page})

    def create_deployment(self, project: str, *, environment: str, sha: str, ref: str, tag: bool, status: str) -> dict[str, Any]:
        return self._call("POST", f"/projects/{project_id(project)}/deployments", DEPLOYMENT, project=project,
                          action=f"record a deployment to {environment}",
                          body={"environment": environment, "sha": sha, "ref": ref, "tag": tag, "status": status})

    def update_deployment(self, project: str, deployment_id: int, status: str) -> dict[str, Any]:
        return self._call("PUT", f"/projects/{project_id(project)}/deployments/{int(deployment_id)}", DEPLOYMENT, project=project,
                          action=f"update deployment {deployment_id}", body={"status": status})

    def commit_of(self, project: str, ref: str) -> str | None:
        """The full SHA `ref` (a tag, or a short SHA that quay tagged an image with) names in GitLab's copy of
        the repository; None when that copy has no such ref."""
        try:
            data = self._call("GET", f"/projects/{project_id(project)}/repository/commits/{quote(ref, safe='')}",
                              COMMIT, project=project, action="read commits")
        except GitLabRefused as exc:
            if exc.status == 404 and "Commit" in exc.message:
                return None
            raise
        return data["id"]
