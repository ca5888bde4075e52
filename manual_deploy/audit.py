"""The record of what happened: one JSON line per deploy attempt in the user's audit log.

Appended with a single write of one line (O_APPEND), so concurrent deploys never interleave records.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from manual_deploy import paths, validate


def stamp(entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` with who, where, when, and an id the cluster's copy and `gitlab-sync` know it by (unless
    `entry` brings its own: a run's final record keeps the id of the "running" one it completes)."""
    return {
        "id": uuid.uuid4().hex,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        **entry,
    }


def record(entry: dict[str, Any], *, log: Path | None = None) -> dict[str, Any]:
    """Append `entry`, stamped; returns the line written."""
    target = log or paths.audit_log()
    target.parent.mkdir(parents=True, exist_ok=True)
    line = stamp(entry)
    data = (json.dumps(line, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return line


def record_key(record: dict[str, Any]) -> str:
    """The record's id; records written before ids existed get one from what never changes in them."""
    if record.get("id"):
        return str(record["id"])
    stable = {k: record.get(k) for k in ("at", "user", "host", "command", "env", "app", "image", "new_revision")}
    return "h" + hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:31]


def read(log: Path | None = None) -> list[dict[str, Any]]:
    """All records, oldest first; unreadable lines are skipped."""
    target = log or paths.audit_log()
    try:
        lines = target.read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def commit_of(app: str, ref: str, log: Path | None = None) -> str | None:
    """The full commit SHA an earlier record of `app` gave for the git tag `ref`.

    A rollback or promote knows only the image tag it goes back to; the deploy that first shipped
    that tag recorded its commit, which GitLab needs in full.
    """
    for entry in reversed(read(log)):
        commit = entry.get("commit")
        if entry.get("app") == app and entry.get("ref") == ref and validate.FULL_SHA.match(str(commit or "")):
            return commit
    return None
