"""What `status` reports: a row per app and env, built from the release and the Deployment, and its drift in words.

Plain data: `as_dict` is the JSON result, and `manual_deploy/views/status.py` draws the same rows as tables.
Whether there is drift is `manual_deploy.drift`'s rule; here it is only told (what, where, what next).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from manual_deploy.config import ResolvedApp
from manual_deploy.drift import IMAGE, MISSING, Drift
from manual_deploy.helm import Revision
from manual_deploy.images import ImageRef
from manual_deploy.live_deployment import LiveDeployment
from manual_deploy.lock import Holder
from manual_deploy.release import description
from manual_deploy.timestamps import iso, parse_time

NOT_DEPLOYED = "not deployed"


@dataclass(frozen=True)
class StatusRequest:
    envs: tuple[str, ...]
    apps: tuple[str, ...] = ()
    kubeconfig: str | None = None


@dataclass
class ReportedDrift:
    """One drift as status tells it: in the table, on stderr and in JSON."""

    kind: str  # image | replicas | deployment
    summary: str  # a few words for the table
    message: str  # the whole story, for stderr and JSON
    hint: str


@dataclass(frozen=True)
class LockStatus:
    """An app's deploy lock as status read it: the holder, and its state at that moment (text and JSON agree)."""

    holder: Holder
    state: str  # live | stale | expired | dead (see Holder.state)
    read_at: datetime

    @classmethod
    def of(cls, holder: Holder, read_at: datetime) -> "LockStatus":
        return cls(holder, holder.state(read_at), read_at)

    @property
    def running(self) -> bool:
        """A deploy still at work (stale: not answering, but its lock not expired yet)."""
        return self.state in ("live", "stale")

    def as_dict(self) -> dict[str, Any]:
        holder, heartbeat = self.holder, self.holder.heartbeat_age(self.read_at)
        return {
            "holder": holder.identity, "reason": holder.reason or None, "command": holder.command or None,
            "phase": holder.phase or None, "state": self.state, "started": iso(holder.started or holder.acquired),
            "heartbeat_age_s": round(heartbeat, 1) if heartbeat is not None else None, "image": holder.image or None,
        }


@dataclass
class AppStatus:
    app: str
    release: str
    deployed: bool = False
    revision: int | None = None
    status: str = NOT_DEPLOYED
    image: str | None = None  # the release's `image` value
    repo: str | None = None
    tag: str | None = None
    digest: str | None = None
    live_image: str | None = None  # what the Deployment's container runs
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    config_replicas: int | None = None  # what the deploy-config repo says
    release_replicas: int | None = None  # what the release's values say
    deployed_at: str | None = None
    deployed_by: str | None = None
    reason: str | None = None
    description: str | None = None
    config_sha: str | None = None
    drift: list[ReportedDrift] = field(default_factory=list)
    error: str | None = None
    gitlab: str | None = None  # whether GitLab has a record of the app's last manual deploy, by anyone on the team
    lock: LockStatus | None = None  # a deploy running now, or one that died holding the lock

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("app")
        data["lock"] = self.lock.as_dict() if self.lock else None
        return data


@dataclass
class EnvStatus:
    env: str
    context: str
    namespace: str
    server: str
    config_branch: str
    config_sha: str | None = None
    apps: dict[str, AppStatus] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None
    deployments: dict[str, LiveDeployment] = field(default_factory=dict, repr=False)  # by release; what drift is read from
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the team's records (cluster + this machine's queue)

    def as_dict(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "namespace": self.namespace,
            "server": self.server,
            "config": {"branch": self.config_branch, "sha": self.config_sha},
            "warnings": self.warnings,
            "error": self.error,
            "apps": {name: app.as_dict() for name, app in self.apps.items()},
        }


@dataclass
class StatusReport:
    envs: list[EnvStatus]

    def as_dict(self) -> dict[str, Any]:
        return {"envs": {env.env: env.as_dict() for env in self.envs}}

    @property
    def failed(self) -> bool:
        """A cluster or a release could not be read: the answer is incomplete (exit 1). Drift alone is not."""
        return any(env.error or any(app.error for app in env.apps.values()) for env in self.envs)

    @property
    def mismatch_count(self) -> int:
        """Drifts found across every env and app."""
        return sum(len(app.drift) for env in self.envs for app in env.apps.values())


def app_status(app: ResolvedApp, current: Revision | None, values: dict, live: LiveDeployment | None) -> AppStatus:
    """One row: the release as helm recorded it, next to the Deployment as it runs."""
    row = AppStatus(app=app.name, release=app.release)
    if live is not None:
        row.live_image, row.ready_replicas, row.desired_replicas = live.app_image(app.image_repo), live.ready, live.desired
    if current is None:
        return row
    row.deployed, row.revision, row.status = True, current.number, current.status
    row.image = str(values["image"]) if values.get("image") is not None else None
    ref = ImageRef.parse(row.image)
    repo, row.tag, row.digest = ref.repo, ref.tag, ref.digest
    row.repo = repo or (app.image_repo if row.tag else None)
    replicas = values.get("replicas")
    row.release_replicas = int(replicas) if str(replicas or "").isdigit() else None
    row.deployed_at = iso(parse_time(current.updated))
    row.description = current.description
    made_by = description.parse(current.description)
    if made_by:
        row.deployed_by, row.reason, row.config_sha = made_by.by, made_by.reason, made_by.config_sha
    return row


def from_records(env: EnvStatus) -> None:
    """Who made each live revision and why, from the team's record of it, where helm's description does not say
    (a rollback's is helm's own "Rollback to N"): any engineer's deploy or rollback, or the undo of a failed one,
    read on any machine."""
    for row in env.apps.values():
        if not row.deployed or row.deployed_by:
            continue
        made = [r for r in env.records if r.get("app") == row.app and (
            (r.get("new_revision") == row.revision and r.get("result") in ("deployed", "rolled back"))
            or r.get("undone_to") == row.revision)]
        if made:
            record = made[-1]
            row.deployed_by = f"{record.get('user', '?')}@{record.get('host', '?')}"
            row.reason = record.get("reason") or None
            if record.get("undone_to") == row.revision:
                row.reason = f"undo of a {record.get('result')} {record.get('command')}" + (f": {row.reason}" if row.reason else "")


def reported(env: EnvStatus, app: ResolvedApp, row: AppStatus, found: Drift) -> ReportedDrift:
    """A drift in the words of status: what differs, where, and the command that puts it right."""
    where = f"{env.env}/{app.name}"
    if found.kind == MISSING:
        return ReportedDrift(
            MISSING, "Deployment missing",
            f"{where}: helm revision {row.revision} exists but Deployment {row.release} does not (deleted behind helm's back?)",
            _rollback_hint(env, row),
        )
    if found.kind == IMAGE:
        return ReportedDrift(
            IMAGE, f"image: runs {ImageRef.parse(row.live_image).short()}",
            f"{where}: the Deployment runs {row.live_image}, but helm revision {row.revision} deployed "
            f"{row.image} (changed behind helm's back, e.g. `kubectl set image`)",
            _rollback_hint(env, row),
        )
    config = f"config/replicas/environment_{env.env} at {env.config_branch}@{(env.config_sha or '')[:8]}"
    if row.release_replicas == found.expected:
        cause, hint = "scaled behind helm's back (e.g. `kubectl scale`)", _rollback_hint(env, row)
    else:
        cause = "the config repo changed since this revision was deployed"
        hint = f"`manual-deploy apply --env {env.env} --app {app.name} --tag {row.tag or '<tag>'}` applies it"
    return ReportedDrift(
        found.kind, f"replicas: config {found.expected} ≠ {found.live}",
        f"{where}: {config} says {found.expected} replicas, the Deployment wants {found.live}: {cause}",
        hint,
    )


def _rollback_hint(env: EnvStatus, row: AppStatus) -> str:
    tag = f" --tag {row.tag}" if row.tag else ""
    return (
        f"restore what helm deployed: `manual-deploy apply --env {env.env} --app {row.release}{tag}` "
        f"(it notices the drift and re-applies), or `helm rollback {row.release} {row.revision} "
        f"--namespace {env.namespace} --kube-context {env.context}`"
    )
