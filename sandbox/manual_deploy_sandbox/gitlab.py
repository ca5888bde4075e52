"""A GitLab API v4 stand-in for backfilling deployment records after an outage (`manual-deploy gitlab-sync`).

It answers like gitlabhq where such a tool depends on it (check order, status codes, error bodies, pagination
headers, idempotent re-posts), looks SHAs and tags up with real git in the bare repository that plays GitLab's
copy of each project (so a mirror that has not caught up is visible), and can fail, answer a scripted body (what
a proxy in front of it might say), go down and come back on the same port. Routing and rules live in gitlab_api.py and gitlab_state.py.
"""

from __future__ import annotations

import collections
import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from manual_deploy_sandbox import gitlab_api, gitlab_git
from manual_deploy_sandbox.gitlab_api import Request
from manual_deploy_sandbox.gitlab_state import ApiError, GitLabState, Project
from manual_deploy_sandbox.ports import LOOPBACK, BackgroundHTTPServer, DispatchHandler, QuietHandler

UNAUTHORIZED = {"message": "401 Unauthorized"}
MAX_BODY = 1 << 20  # GitLab would accept more; nobody posts a megabyte of deployment params
DEPLOYER = {"id": 1, "username": "sandbox-deployer", "name": "Sandbox Deployer", "state": "active",
            "locked": False, "avatar_url": None}
REPORTER = {"id": 2, "username": "sandbox-reporter", "name": "Sandbox Reporter", "state": "active",
            "locked": False, "avatar_url": None}
CI_USER = {"id": 3, "username": "ci-bot", "name": "CI Bot", "state": "active", "locked": False, "avatar_url": None}
# What a client sees for injected faults: Rails' own 500 JSON; 502/503/504 come from the proxy in front as HTML.
FAULT_PAGE = "<!DOCTYPE html>\n<html><head><title>GitLab is not responding ({status})</title></head>" \
             "<body><h1>{status}</h1><p>The sandbox GitLab is unavailable; try again later.</p></body></html>\n"


class GitLabStandIn:
    """GitLab's REST API (v4) for a few projects on 127.0.0.1, with scripted faults and outages."""

    def __init__(self, token: str, *, reporter_token: str | None = None) -> None:
        self.token = token
        self.reporter_token = reporter_token
        self.url = ""
        self.requests: list[dict] = []
        self._state = GitLabState()
        self._faults: collections.deque[int] = collections.deque()
        self._scripted: list[tuple[str, re.Pattern[str], int, Any]] = []
        self._http = BackgroundHTTPServer(DispatchHandler, self)
        self._port = 0
        self._serving = False
        self._life = threading.Lock()  # start/stop/down/up one at a time (the marker loop runs in another thread)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> GitLabStandIn:
        """Serve on 127.0.0.1:<free port>."""
        with self._life:
            if not self._serving:
                self._port = self._http.start(self._port)
                self.url = f"http://{LOOPBACK}:{self._port}"
                self._serving = True
        return self

    def stop(self) -> None:
        """Stop serving for good; idempotent."""
        with self._life:
            self._http.stop()
            self._serving = False
            self._port = 0

    def down(self) -> None:
        """Close the listening socket: clients get "connection refused" until up(). State is kept."""
        with self._life:
            self._http.stop()

    def up(self) -> None:
        """Listen again on the same port (and URL) after down()."""
        with self._life:
            if not self._serving:
                raise RuntimeError("up() needs a started stand-in (call start() first)")
            self._http.start(self._port)

    @property
    def is_up(self) -> bool:
        return self._serving and self._http.running

    def __enter__(self) -> GitLabStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting (for tests and the sandbox)

    def add_project(self, path: str, repo: Path) -> int:
        """Register project `path` ("hca/ingest-core") whose GitLab copy is the bare repository `repo`."""
        return self._state.add_project(path, Path(repo))

    def protect(self, path: str, environment: str) -> None:
        """Protect `environment`: our caller may not deploy to it (POST/PUT answer 403)."""
        project = self._project(path)
        with self._state.lock:
            project.protected.add(environment)

    def fail_next(self, *statuses: int) -> None:
        """The next len(statuses) requests answer these codes, in order (before auth, like a proxy would)."""
        with self._state.lock:
            self._faults.extend(statuses)

    def answer_next(self, method: str, path_regex: str, status: int, body: Any) -> None:
        """The next `method` request whose path (as sent, e.g. `/api/v4/projects/hca%2Fingest-core/deployments`)
        matches `path_regex` (re.search) gets `status` and `body` instead of GitLab's answer, once: what a proxy,
        a captive portal or a broken GitLab might say. A str body goes out as an HTML page, anything else as JSON.
        Nothing behind it runs (a POST records nothing); an injected fault_next still comes first."""
        with self._state.lock:
            self._scripted.append((method.upper(), re.compile(path_regex), status, body))

    def _scripted_answer(self, method: str, path: str) -> tuple[int, Any] | None:
        """Pop the first answer_next entry that matches this request (called under the state lock)."""
        for index, (verb, pattern, status, body) in enumerate(self._scripted):
            if verb == method and pattern.search(path):
                del self._scripted[index]
                return status, body
        return None

    def add_ci_deployment(self, path: str, environment: str, sha: str, ref: str, status: str = "success") -> dict:
        """A deployment made by a CI job (it has a `deployable`), as the pipeline before the outage left it."""
        project = self._project(path)
        commit = gitlab_git.commit_info(project.repo, sha)
        if commit is None:
            raise ValueError(f"{sha} is not in {path}'s repository")
        job = self._ci_job(project.id, ref, status, commit)
        params = {"environment": environment, "sha": commit["id"], "ref": ref, "tag": False, "status": status}
        try:
            return self._state.create(project, params, dict(CI_USER), deployable=job).entity()
        except ApiError as exc:
            raise ValueError(f"GitLab would not record that deployment: {exc.body}") from exc

    def deployments(self, path: str) -> list[dict]:
        """API-shaped copies of the project's deployments, oldest first."""
        project = self._project(path)
        with self._state.lock:
            return [d.entity() for d in sorted(project.deployments, key=lambda d: d.id)]

    def _project(self, path: str) -> Project:
        """A project added with add_project, for the scripting helpers (KeyError names a typo at once)."""
        found = self._state.find_project(path)
        if found is None:
            raise KeyError(f"no project {path!r}; add_project() it first")
        return found

    def _ci_job(self, project_id: int, ref: str, status: str, commit: dict) -> dict:
        """API::Entities::Ci::Job, the fields a client might read."""
        job_id = self._state.next_id("job")
        stamp = gitlab_git.now_iso()
        return {"id": job_id, "status": status, "stage": "deploy", "name": "deploy", "ref": ref, "tag": False,
                "coverage": None, "allow_failure": False, "created_at": stamp, "started_at": stamp,
                "finished_at": stamp, "duration": 1.0, "queued_duration": 0.1, "user": dict(CI_USER),
                "commit": commit, "pipeline": {"id": job_id, "project_id": project_id, "sha": commit["id"],
                                               "ref": ref, "status": status, "source": "push"},
                "web_url": f"{self.url}/-/jobs/{job_id}", "project": {"ci_job_token_scope_enabled": False},
                "artifacts": [], "runner": None, "artifacts_expire_at": None, "tag_list": []}

    # ------------------------------------------------------------------ HTTP

    def _handle(self, handler: QuietHandler) -> None:
        """Record the request (never the token), then: injected fault > route > auth > endpoint."""
        parts = urlsplit(handler.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._read_body(handler)
        with self._state.lock:
            self.requests.append({"method": handler.command, "path": parts.path, "query": query, "body": body})
            fault = self._faults.popleft() if self._faults else None
            scripted = None if fault is not None else self._scripted_answer(handler.command, parts.path)
        if fault is not None:
            self._answer_fault(handler, fault)
            return
        if scripted is not None:
            self._answer_scripted(handler, *scripted)
            return
        status, payload, headers = self._answer(handler, parts.path, query, body)
        handler.send_json(status, payload, headers)

    def _answer(self, handler: QuietHandler, path: str, query: dict, body: Any) -> tuple[int, Any, dict]:
        segments = path.split("/")[1:]
        if segments[:2] != ["api", "v4"]:
            return 404, {"error": "404 Not Found"}, {}
        found = gitlab_api.route(segments[2:], handler.command)
        if found is None:
            return 404, {"error": "404 Not Found"}, {}
        endpoint, needs_token = found
        params = {**query, **body} if isinstance(body, dict) else dict(query)
        request = Request(handler.command, segments[2:], query, params, self.url)
        try:
            self._authenticate(handler, request, needs_token)
            return endpoint(self._state, request)
        except ApiError as exc:
            return exc.status, exc.body, {}

    def _authenticate(self, handler: QuietHandler, request: Request, needs_token: bool) -> None:
        """A wrong token is 401 everywhere; no token is 401 where the endpoint calls authenticate!."""
        token = handler.headers.get("PRIVATE-TOKEN")
        bearer = handler.headers.get("Authorization", "")
        if token is None and bearer[:7].lower() == "bearer ":
            token = bearer[7:].strip()
        if token is None:
            if needs_token:
                raise ApiError(401, UNAUTHORIZED)
            return
        if token == self.token:
            request.user, request.can_write = dict(DEPLOYER), True
        elif self.reporter_token is not None and token == self.reporter_token:
            request.user = dict(REPORTER)
        else:
            raise ApiError(401, UNAUTHORIZED)

    @staticmethod
    def _read_body(handler: QuietHandler) -> Any:
        """JSON or form-encoded params (Grape takes both); None when there is no body."""
        length = int(handler.headers.get("Content-Length") or 0)
        if length <= 0:
            return None
        raw = handler.rfile.read(min(length, MAX_BODY))
        kind = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                return json.loads(raw)
            except ValueError:
                return {}
        return dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))

    @staticmethod
    def _answer_scripted(handler: QuietHandler, status: int, body: Any) -> None:
        if isinstance(body, str):
            handler.send_body(status, body.encode(), content_type="text/html; charset=utf-8")
        else:
            handler.send_json(status, body)

    @staticmethod
    def _answer_fault(handler: QuietHandler, status: int) -> None:
        if status == 500:
            handler.send_json(500, {"message": "500 Internal Server Error"})
        elif status == 429:
            handler.send_body(429, b"Retry later\n", {"Retry-After": "1"}, content_type="text/plain")
        else:
            page = FAULT_PAGE.format(status=status).encode()
            handler.send_body(status, page, content_type="text/html; charset=utf-8")


def follow_outage_marker(standin: GitLabStandIn, marker: Path) -> bool:
    """One step of an outage drill: down while `marker` exists, up once it is gone. Returns whether it serves.

    Cheap and idempotent, for a supervisor loop (e.g. every 0.5 s); a stopped stand-in is left alone.
    """
    if not standin._serving:
        return False
    wanted_up = not Path(marker).exists()
    if wanted_up != standin.is_up:
        standin.up() if wanted_up else standin.down()
    return standin.is_up

