"""Routing and parameter handling of the GitLab stand-in: the order of GitLab's checks, its messages and headers.

Order per request, as in gitlabhq's Grape API: unknown route (404, no auth needed) > authentication (401) >
parameter validation (400, Grape's "x is missing, …" text) > project lookup (404) > role (403) > the endpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable
from urllib.parse import unquote, urlencode

from manual_deploy_sandbox import gitlab_git
from manual_deploy_sandbox.gitlab_state import ApiError, GitLabState, Project, forbidden

API_STATUSES = ("running", "success", "failed", "canceled")
LIST_STATUSES = ("created", "running", "success", "failed", "canceled", "skipped", "blocked")
ORDER_BY = ("id", "iid", "created_at", "updated_at", "ref", "finished_at")
TRUE = {"1", "on", "t", "true", "y", "yes"}
FALSE = {"0", "off", "f", "false", "n", "no"}
NOT_FOUND_ROUTE = ApiError(404, {"error": "404 Not Found"})
VERSION = {"version": "17.5.0", "revision": "sandbox", "kas": {"enabled": False, "externalUrl": None,
                                                               "version": None}, "enterprise": False}


def grape_error(messages: list[str]) -> ApiError:
    """Grape::Exceptions::ValidationErrors as GitLab renders them: one "error" string, joined by ", "."""
    return ApiError(400, {"error": ", ".join(dict.fromkeys(messages))})


def to_bool(value: Any) -> bool | None:
    """Grape's Boolean coercion; None when the value is not a boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in TRUE else False if text in FALSE else None


def create_params(params: dict) -> dict:
    """Validate POST .../deployments params in declaration order (environment, sha, ref, tag, status)."""
    errors: list[str] = []
    clean: dict[str, Any] = {}
    for name in ("environment", "sha", "ref"):
        if params.get(name) is None:
            errors.append(f"{name} is missing")
        else:
            clean[name] = str(params[name])
    if params.get("tag") is None:
        errors.append("tag is missing")
    elif (clean_tag := to_bool(params["tag"])) is None:
        errors.append("tag is invalid")
    else:
        clean["tag"] = clean_tag
    clean["status"] = status_param(params, errors, required=True)
    if errors:
        raise grape_error(errors)
    return clean


def status_param(params: dict, errors: list[str], *, required: bool, values: tuple = API_STATUSES) -> str | None:
    """A `requires/optional :status, values: [...]`; a missing required one gets both of Grape's messages."""
    value = params.get("status")
    if value is None:
        if required:
            errors += ["status is missing", "status does not have a valid value"]
        return None
    if str(value) not in values:
        errors.append("status does not have a valid value")
    return str(value)


def parse_time(params: dict, name: str, errors: list[str]) -> datetime | None:
    if params.get(name) is None:
        return None
    try:
        return datetime.fromisoformat(str(params[name]).replace("Z", "+00:00"))
    except ValueError:
        errors.append(f"{name} is invalid")
        return None


def list_query(query: dict) -> dict:
    """GET .../deployments params; also DeploymentsFinder's refusal of unpaired finished_at filters/sorting."""
    errors: list[str] = []
    opts: dict[str, Any] = {"order_by": query.get("order_by", "id"), "sort": query.get("sort", "asc"),
                            "environment": query.get("environment")}
    for name, allowed in (("order_by", ORDER_BY), ("sort", ("asc", "desc"))):
        if opts[name] not in allowed:
            errors.append(f"{name} does not have a valid value")
    opts["status"] = status_param(query, errors, required=False, values=LIST_STATUSES)
    for name in ("updated_after", "updated_before", "finished_after", "finished_before"):
        opts[name] = parse_time(query, name, errors)
    opts["page"], opts["per_page"] = page_params(query, errors)
    if errors:
        raise grape_error(errors)
    finder_checks(opts)
    return opts


def page_params(query: dict, errors: list[str]) -> tuple[int, int]:
    values = []
    for name, default in (("page", 1), ("per_page", 20)):
        raw = query.get(name, str(default))
        if not raw.lstrip("-").isdigit():
            errors.append(f"{name} is invalid")
            values.append(default)
        else:
            values.append(int(raw))
    page, per_page = values
    return max(page, 1), min(per_page if per_page > 0 else 20, 100)


def finder_checks(opts: dict) -> None:
    """DeploymentsFinder#validate! raises InefficientQueryError; the API answers bad_request!(message)."""
    by_updated = opts["updated_after"] or opts["updated_before"]
    by_finished = opts["finished_after"] or opts["finished_before"]
    reason = None
    if by_updated and by_finished:
        reason = "Both `updated_at` filter and `finished_at` filter can not be specified"
    elif bool(by_finished) != (opts["order_by"] == "finished_at"):
        reason = "`finished_at` filter and `finished_at` sorting must be paired"
    elif by_finished and opts["status"] != "success":
        reason = "`finished_at` filter must be combined with `success` status filter."
    if reason:
        raise ApiError(400, {"message": f"400 Bad request - {reason}"})


def _within(stamp: str | None, after: datetime | None, before: datetime | None) -> bool:
    if after is None and before is None:
        return True
    if stamp is None:
        return False
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (after is None or moment >= after) and (before is None or moment < before)


def list_deployments(project: Project, opts: dict) -> list[dict]:
    """Filter and order like DeploymentsFinder (created_at and iid sort as id; updated_at ties by id desc)."""
    rows = [d for d in project.deployments
            if (opts["environment"] is None or d.environment.name == opts["environment"])
            and (opts["status"] is None or d.status == opts["status"])
            and _within(d.updated_at, opts["updated_after"], opts["updated_before"])
            and _within(d.finished_at, opts["finished_after"], opts["finished_before"])]
    column = {"created_at": "id", "iid": "id"}.get(opts["order_by"], opts["order_by"])
    rows.sort(key=lambda d: d.id, reverse=column == "updated_at")  # tie-breaker first (stable sort)
    if column != "id":
        rows.sort(key=lambda d: getattr(d, column) or "", reverse=opts["sort"] == "desc")
    elif opts["sort"] == "desc":
        rows.reverse()
    return [d.entity() for d in rows]


def paginate(rows: list, page: int, per_page: int, url: str, query: dict) -> tuple[list, dict[str, str]]:
    """Offset pagination with GitLab's X-* headers and Link."""
    total_pages = max(1, -(-len(rows) // per_page))
    next_page = str(page + 1) if page < total_pages else ""
    prev_page = str(page - 1) if 1 < page <= total_pages + 1 else ""

    def link(number: int) -> str:
        return url + "?" + urlencode({**query, "page": number, "per_page": per_page})

    links = [f'<{link(int(p))}>; rel="{rel}"' for p, rel in ((prev_page, "prev"), (next_page, "next")) if p]
    links += [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
    headers = {"X-Total": str(len(rows)), "X-Total-Pages": str(total_pages), "X-Page": str(page),
               "X-Per-Page": str(per_page), "X-Next-Page": next_page, "X-Prev-Page": prev_page,
               "Link": ", ".join(links)}
    return rows[(page - 1) * per_page: page * per_page], headers


class Request:
    """One API call: method, path segments after /api/v4 (each percent-decoded), query, params, caller."""

    def __init__(self, method: str, segments: list[str], query: dict, params: dict, base_url: str) -> None:
        self.method, self.segments, self.query, self.params = method, segments, query, params
        self.base_url = base_url
        self.user: dict | None = None
        self.can_write = False


Handler = Callable[[GitLabState, Request], tuple[int, Any, dict[str, str]]]


def route(segments: list[str], method: str) -> tuple[Handler, bool] | None:
    """(handler, needs a token) for the path, or None: GitLab's catch-all 404 (answered before any auth)."""
    s = [unquote(part) for part in segments]
    get = method in ("GET", "HEAD")
    table: list[tuple[bool, str, Handler, bool]] = [
        (s == ["version"], "GET", get_version, True),
        (len(s) == 2 and s[0] == "projects", "GET", get_project, False),
        (len(s) == 3 and s[0] == "projects" and s[2] == "deployments", "GET", get_deployments, True),
        (len(s) == 3 and s[0] == "projects" and s[2] == "deployments", "POST", post_deployment, True),
        (len(s) == 4 and s[0] == "projects" and s[2] == "deployments", "GET", get_deployment, True),
        (len(s) == 4 and s[0] == "projects" and s[2] == "deployments", "PUT", put_deployment, True),
        (len(s) == 5 and s[0] == "projects" and s[2:4] == ["repository", "tags"], "GET", get_tag, False),
        (len(s) == 5 and s[0] == "projects" and s[2:4] == ["repository", "commits"], "GET", get_commit, False),
    ]
    matched = [row for row in table if row[0]]
    for _, verb, handler, needs_token in matched:
        if verb == method or (verb == "GET" and get):
            return handler, needs_token
    if matched:
        return not_allowed, False
    return None


def not_allowed(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    raise ApiError(405, {"error": "405 Not Allowed"})


def visible_project(state: GitLabState, request: Request) -> Project:
    """find_project!: a private project is "404 Project Not Found" to anonymous callers too."""
    project = state.project(unquote(request.segments[1]))
    if request.user is None:
        raise ApiError(404, {"message": "404 Project Not Found"})
    return project


def deployment_id(request: Request) -> int:
    raw = unquote(request.segments[3])
    if not raw.isdigit():
        raise grape_error(["deployment_id is invalid"])
    return int(raw)


def get_version(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    return 200, dict(VERSION), {}


def get_project(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    return 200, visible_project(state, request).entity(request.base_url), {}


def get_deployments(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    opts = list_query(request.query)
    project = visible_project(state, request)
    with state.lock:
        rows = list_deployments(project, opts)
    url = f"{request.base_url}/api/v4/projects/{project.id}/deployments"
    page, headers = paginate(rows, opts["page"], opts["per_page"], url, request.query)
    return 200, page, headers


def get_deployment(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    wanted = deployment_id(request)
    project = visible_project(state, request)
    return 200, state.deployment(project, wanted).entity(), {}


def post_deployment(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    params = create_params(request.params)
    project = visible_project(state, request)
    if not request.can_write:
        raise forbidden()
    return 201, state.create(project, params, request.user or {}).entity(), {}


def put_deployment(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    errors: list[str] = []
    status = status_param(request.params, errors, required=True)
    wanted = deployment_id(request)
    if errors:
        raise grape_error(errors)
    project = visible_project(state, request)
    return 200, state.update(project, wanted, str(status), request.can_write).entity(), {}


def get_tag(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    project = visible_project(state, request)
    tag = gitlab_git.find_tag(project.repo, unquote(request.segments[4]))
    if tag is None:
        raise ApiError(404, {"message": "404 Tag Not Found"})
    return 200, tag, {}


def get_commit(state: GitLabState, request: Request) -> tuple[int, Any, dict]:
    project = visible_project(state, request)
    commit = gitlab_git.commit_info(project.repo, unquote(request.segments[4]))
    if commit is None:
        raise ApiError(404, {"message": "404 Commit Not Found"})
    web = f"{request.base_url}/{project.path}/-/commit/{commit['id']}"
    return 200, {**commit, "web_url": web, "trailers": {}, "extended_trailers": {}, "stats": None,
                 "status": None, "project_id": project.id, "last_pipeline": None}, {}
