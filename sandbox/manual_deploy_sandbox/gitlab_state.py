"""What the GitLab stand-in remembers (projects, environments, deployments) and GitLab's rules for changing it.

The rules follow gitlabhq (lib/api/deployments.rb, app/models/deployment.rb, Deployments::CreateService) where a
deployment backfill depends on them: the ref and SHA must exist in GitLab's copy of the repository, protected
environments and CI-made deployments refuse changes, and re-posting the environment's last successful deployment
returns that one instead of adding another.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from manual_deploy_sandbox import gitlab_git
from manual_deploy_sandbox.gitlab_git import now_iso

FINISHED = ("success", "failed", "canceled")
# Deployment state machine (app/models/deployment.rb): which statuses each API status may be reached from.
ALLOWED_FROM = {
    "running": ("created", "blocked"),
    "success": ("created", "running", "failed", "canceled", "blocked", "skipped"),
    "failed": ("created", "running", "success", "canceled", "blocked", "skipped"),
    "canceled": ("created", "running", "success", "failed", "blocked", "skipped"),
}
EVENT = {"running": "run", "success": "succeed", "failed": "drop", "canceled": "cancel"}


class ApiError(Exception):
    """An answer GitLab gives instead of the resource: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def forbidden(reason: str | None = None) -> ApiError:
    """API::Helpers#forbidden!: "403 Forbidden", with " - reason" when one is given."""
    return ApiError(403, {"message": "403 Forbidden" + (f" - {reason}" if reason else "")})


def env_slug(name: str) -> str:
    """Roughly Gitlab::Slug::Environment: lowercase, [a-z0-9-], starts with a letter, ≤ 24, suffix when changed."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", name.lower())).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "env-" + slug
    if slug == name and len(slug) <= 24:
        return slug
    suffix = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{slug[:17].rstrip('-')}-{suffix}"


@dataclass
class Environment:
    id: int
    name: str
    slug: str
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    def entity(self) -> dict:
        """API::Entities::EnvironmentBasic."""
        return {"id": self.id, "name": self.name, "slug": self.slug, "external_url": None,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass
class Deployment:
    id: int
    iid: int
    environment: Environment
    ref: str
    sha: str
    tag: bool
    user: dict
    status: str = "created"
    deployable: dict | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    finished_at: str | None = None

    def transition(self, status: str) -> None:
        """Fire the state-machine event for `status`; an invalid one fails the way state_machines reports it."""
        if self.status not in ALLOWED_FROM[status]:
            raise ApiError(400, {"message": {"status": [f'cannot transition via "{EVENT[status]}"']}})
        self.status, self.updated_at = status, now_iso()
        if status in FINISHED:
            self.finished_at = self.updated_at

    def entity(self) -> dict:
        """API::Entities::Deployment (DeploymentExtended adds nothing in CE). No deployed_at: the API has none."""
        return {"id": self.id, "iid": self.iid, "ref": self.ref, "sha": self.sha, "created_at": self.created_at,
                "updated_at": self.updated_at, "user": dict(self.user), "environment": self.environment.entity(),
                "deployable": None if self.deployable is None else dict(self.deployable), "status": self.status}


@dataclass
class Project:
    id: int
    path: str
    repo: Path
    protected: set[str] = field(default_factory=set)
    environments: dict[str, Environment] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    next_iid: int = 1

    def entity(self, base_url: str) -> dict:
        """The fields of API::Entities::Project a client plausibly reads."""
        namespace, _, name = self.path.rpartition("/")
        return {
            "id": self.id, "description": None, "name": name, "name_with_namespace": f"{namespace} / {name}",
            "path": name, "path_with_namespace": self.path, "created_at": "2019-01-01T00:00:00.000Z",
            "default_branch": gitlab_git.default_branch(self.repo), "visibility": "private",
            "web_url": f"{base_url}/{self.path}", "http_url_to_repo": f"{base_url}/{self.path}.git",
            "ssh_url_to_repo": f"git@127.0.0.1:{self.path}.git",
            "namespace": {"id": 1, "name": namespace, "path": namespace.rpartition("/")[2], "kind": "group",
                          "full_path": namespace},
        }

    def last_success(self, environment: Environment) -> Deployment | None:
        """Environment#last_deployment: the latest finished successful one (success.ordered)."""
        done = [d for d in self.deployments if d.environment is environment and d.status == "success"]
        return max(done, key=lambda d: (d.finished_at or "", d.id), default=None)


class GitLabState:
    """Projects and their deployments behind one lock; every method is safe to call from request threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.projects: dict[int, Project] = {}
        self._ids = {"project": 0, "environment": 0, "deployment": 0, "job": 0}

    def next_id(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] += 1
            return self._ids[kind]

    def add_project(self, path: str, repo: Path) -> int:
        with self.lock:
            if self.find_project(path) is not None:
                raise ValueError(f"project {path} exists already")
            project = Project(self.next_id("project"), path, Path(repo))
            self.projects[project.id] = project
            return project.id

    def find_project(self, key: str) -> Project | None:
        """By numeric id or full path, like find_project! (paths compare case-insensitively there)."""
        with self.lock:
            if key.isdigit() and int(key) in self.projects:
                return self.projects[int(key)]
            return next((p for p in self.projects.values() if p.path.lower() == key.lower()), None)

    def project(self, key: str) -> Project:
        found = self.find_project(key)
        if found is None:
            raise ApiError(404, {"message": "404 Project Not Found"})
        return found

    def environment(self, project: Project, name: str) -> Environment:
        """find_or_create_by_name."""
        with self.lock:
            if name not in project.environments:
                project.environments[name] = Environment(self.next_id("environment"), name, env_slug(name))
            return project.environments[name]

    def create(self, project: Project, params: dict, user: dict, deployable: dict | None = None) -> Deployment:
        """POST .../deployments after parameter validation: ref check, environment, protection, sha, idempotency."""
        if gitlab_git.resolve_commit(project.repo, params["ref"]) is None:
            raise ApiError(400, {"message": {"ref": ["The branch or tag does not exist"]}})
        with self.lock:
            environment = self.environment(project, params["environment"])
            if deployable is None and environment.name in project.protected:
                raise forbidden()
        sha_errors = [] if params["sha"] else ["can't be blank"]
        if gitlab_git.resolve_commit(project.repo, params["sha"]) is None:
            sha_errors.append("The commit does not exist")
        if sha_errors:
            raise ApiError(400, {"message": {"sha": sha_errors}})
        with self.lock:
            return self._build(project, environment, params, user, deployable)

    def _build(self, project: Project, environment: Environment, params: dict, user: dict,
               deployable: dict | None) -> Deployment:
        last = project.last_success(environment)
        if deployable is None and last is not None and (last.ref, last.tag, last.sha, last.status) == (
                params["ref"], params["tag"], params["sha"], params["status"]):
            return last  # Deployments::CreateService: `return last_deployment if last_deployment&.equal_to?(params)`
        deployment = Deployment(self.next_id("deployment"), project.next_iid, environment, params["ref"],
                                params["sha"], params["tag"], user, deployable=deployable)
        deployment.transition(params["status"])
        project.next_iid += 1
        project.deployments.append(deployment)
        gitlab_git.write_ref(project.repo, f"refs/environments/{environment.slug}/deployments/{deployment.iid}",
                             gitlab_git.resolve_commit(project.repo, deployment.sha) or deployment.sha)
        return deployment

    def deployment(self, project: Project, deployment_id: int) -> Deployment:
        with self.lock:
            for deployment in project.deployments:
                if deployment.id == deployment_id:
                    return deployment
        raise ApiError(404, {"message": "404 Not found"})

    def update(self, project: Project, deployment_id: int, status: str, can_write: bool) -> Deployment:
        """PUT .../deployments/:id: find, authorize (role, protected env), refuse CI-made, transition."""
        with self.lock:
            deployment = self.deployment(project, deployment_id)
            if not can_write or deployment.environment.name in project.protected:
                raise forbidden()
            if deployment.deployable is not None:
                raise forbidden("Deployments created using GitLab CI can not be updated using the API")
            deployment.transition(status)
            return deployment
