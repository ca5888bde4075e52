"""Manual deploys as GitLab deployment records: which team records GitLab should know, and which it does.

A team record (deploy_records.py: who, env, app, tag, commit, result) says itself whether GitLab has it:
`gitlab` (the deployment that stands for it, stored by whoever synced it) or `skipped` (who and why).
What this machine posted (or found already there) is also remembered in `gitlab-sync.json` beside the
audit log, by record id: the answer for a record only this machine's queue holds, and what `status`
can say offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from manual_deploy import paths, validate
from manual_deploy.audit import record_key
from manual_deploy.config import Config
from manual_deploy.jsonfile import write_atomic
from manual_deploy.timestamps import parse_time

STATUS_OF = {"deployed": "success", "rolled back": "success", "failed": "failed", "interrupted": "canceled"}
VERBS = frozenset({"apply", "deploy", "promote", "rollback"})
CLOCK_SLACK = timedelta(minutes=10)  # the laptop's clock against GitLab's
MEMORY_FILE = "gitlab-sync.json"
SYNC = "manual-deploy gitlab-sync"


@dataclass(frozen=True)
class ManualDeploy:
    """One audit record, as GitLab's deployment record should say it."""

    key: str
    at: datetime
    env: str
    app: str
    project: str
    ref: str
    commit: str | None
    status: str
    command: str
    user: str

    @classmethod
    def from_record(cls, record: dict[str, Any], config: Config) -> ManualDeploy | None:
        """None for what GitLab has no record for: dry runs, unchanged apps, other verbs, unreadable lines."""
        status = STATUS_OF.get(str(record.get("result")))
        at = parse_time(record.get("at"))
        app, env = record.get("app"), record.get("env")
        if record.get("command") not in VERBS or status is None or at is None or not app or not env:
            return None
        ref = record.get("ref") or _image_tag(record.get("image"))
        if not ref:
            return None
        # The config wins: a path fixed there after a 404 must apply to the records already written.
        project = config.app(app).gitlab_project if app in config.apps else (record.get("gitlab_project") or f"hca/{app}")
        commit = record.get("commit") if validate.FULL_SHA.match(str(record.get("commit") or "")) else None
        return cls(key=record_key(record), at=at, env=str(env), app=str(app), project=str(project), ref=str(ref),
                   commit=commit, status=status, command=str(record["command"]), user=str(record.get("user") or "?"))

    def describe(self) -> str:
        return (f"{self.env} {self.app}: {self.command} of {self.ref} ({self.status}) at {self.at:%Y-%m-%d %H:%M}Z by {self.user} "
                f"[record {self.key[:12]}]")

    def payload(self, sha: str | None) -> dict[str, Any]:
        """What is POSTed; `ref` is always a git tag here (the image tag `manual-deploy tag` pushed)."""
        return {"environment": self.env, "sha": sha, "ref": self.ref, "tag": True, "status": self.status}


def _image_tag(image: Any) -> str | None:
    from manual_deploy.images import ImageRef

    return ImageRef.parse(str(image)).tag if image else None


class SyncMemory:
    """What was posted (or found already there), by audit record key; written after every change."""

    def __init__(self, path: Path | None = None):
        self.path = path or paths.state_dir() / MEMORY_FILE
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        self.entries: dict[str, dict[str, Any]] = data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def claimed(self) -> set[int]:
        """GitLab deployment ids already standing for some record: never adopted for another."""
        return {e["deployment_id"] for e in self.entries.values() if isinstance(e.get("deployment_id"), int)}

    def remember(self, key: str, **info: Any) -> None:
        self.entries[key] = {**info, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_atomic(self.path, self.entries)


def gitlab_state(record: dict[str, Any] | None, memory: SyncMemory | None = None) -> str:
    """For `status`: whether GitLab has this team record: from the record's own `gitlab`/`skipped` (written by
    whoever synced it, on any machine), else what this machine's gitlab-sync remembers of it."""
    from manual_deploy.gitlab_claims import fresh_claim

    if record is None:
        return "-"
    entry = record.get("gitlab") if isinstance(record.get("gitlab"), dict) else None
    skipped = record.get("skipped") if isinstance(record.get("skipped"), dict) else None
    if entry is None and skipped is None:
        remembered = (memory or SyncMemory()).get(record_key(record))
        skipped = remembered if remembered and remembered.get("outcome") == "skipped" else None
        entry = remembered if skipped is None else None
    if skipped is not None:
        return f"skipped by {skipped.get('by') or '?'}: {skipped.get('why') or 'no reason given'}"
    if entry is None:
        claim = fresh_claim(record)
        return f"being recorded by {claim.get('by') or '?'}" if claim else "not recorded"
    if entry.get("outcome") == "superseded":
        return "superseded by a later CI deploy"
    status = entry.get("status")
    return f"recorded (#{entry.get('iid', '?')}{'' if status == 'success' else f', {status}'})"


def last_deploy_states(config: Config, releases: dict[tuple[str, str], bool],
                       records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """For `status`: per (env, app), whether GitLab has a record of the app's last manual deploy.

    `releases` says, per (env, app), whether its release was made by manual-deploy (from any machine).
    `records`: the team's records of the envs read (each cluster, and this machine's queue). No GitLab
    call, so it works while GitLab is down."""
    memory, last = SyncMemory(), {}
    for record in records:
        if ManualDeploy.from_record(record, config) is not None:
            last[(record["env"], record["app"])] = record
    return {key: gitlab_state(last[key], memory) if key in last else ("no team record" if by_us else "-")
            for key, by_us in releases.items()}
