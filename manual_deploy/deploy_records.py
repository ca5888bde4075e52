"""The team's record of every deploy, rollback and promote, kept in the cluster next to the release.

A laptop's audit log knows only its own runs, and a laptop can be lost; the env's namespace is the one
place every engineer who can deploy can also read and write (the deploy lock lives there too). One
ConfigMap per app, `manual-deploy-records-<app>`, holds its newest KEEP records as JSON, oldest first.
Every write is conditional on the resourceVersion just read (409: read again, redo the change), so two
engineers never lose each other's records and only one of them can store a record's GitLab id.

A ConfigMap of that name that is not ours (no managed-by label, not JSON, not a list of records) is
reported and left alone: the record waits in the local queue, and the deploy goes on.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from manual_deploy.errors import OperationFailed
from manual_deploy.redact import env_secrets, redact

PREFIX = "manual-deploy-records-"
MANAGED_BY = ("app.kubernetes.io/managed-by", "manual-deploy")
DATA_KEY = "records.json"
KEEP = 200  # ~1 KiB each: far below the 1 MiB object limit
WRITE_ATTEMPTS = 12  # conflicting writers: each retry reads the newest version first
CONFLICT_PAUSE_S = 0.05  # times the attempt, jittered: writers that collided do not collide again in lockstep
TEAM_FIELDS = ("gitlab", "skipped", "claim")  # written by gitlab-sync on any machine: a re-push never drops them
RUNNING = "running"  # the result of a record whose run has not ended (yet, or ever: it died)


class RecordsNotOurs(OperationFailed):
    """The records ConfigMap exists but is not what we write: left alone, never overwritten."""


def oldest_first(records) -> list[dict[str, Any]]:
    """Records in the order they were written (`at` is always audit.stamp's UTC ISO form, so text order is time order)."""
    return sorted(records, key=lambda r: str(r.get("at") or ""))


def configmap_name(app: str) -> str:
    return f"{PREFIX}{app}"


@dataclass
class RecordBook:
    """One app's records in one namespace, as read, with the version a write must be conditional on."""

    app: str
    records: list[dict[str, Any]] = field(default_factory=list)
    resource_version: str | None = None  # None: no ConfigMap yet (a write creates it)

    def find(self, record_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("id") == record_id), None)


def _records_of(obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The records a ConfigMap holds, or RecordsNotOurs saying why it is not ours."""
    meta = obj.get("metadata") or {}
    where = f"ConfigMap {meta.get('name')} in {namespace}"
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
        raise RecordsNotOurs(f"{where} is not manual-deploy's (no label {MANAGED_BY[0]}={MANAGED_BY[1]}); left alone",
                             hint=f"rename or delete it if nobody needs it: `kubectl -n {namespace} get configmap {meta.get('name')} -o yaml`")
    text = (obj.get("data") or {}).get(DATA_KEY, "[]")
    try:
        records = json.loads(text)
    except ValueError:
        records = None
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in records):
        raise RecordsNotOurs(f"{where} was edited into something that is not a list of deploy records ({DATA_KEY}); left alone",
                             hint=f"restore it from a colleague's `manual-deploy history`, or delete it: "
                                  f"`kubectl -n {namespace} delete configmap {meta.get('name')}`")
    return records


def _path(namespace: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps" + (f"/{name}" if name else "")


def _api(kube):
    """Plain JSON requests: a deploy's path cannot afford importing the typed CoreV1Api (≈ 1 s of CPU beside helm)."""
    from manual_deploy.readiness.api import Api

    return Api(kube)


def read_book(kube, namespace: str, app: str) -> RecordBook:
    """The app's records (none when it has no ConfigMap yet); RecordsNotOurs for one we must not touch."""
    found = _api(kube).get(_path(namespace, configmap_name(app)))
    if found is None:
        return RecordBook(app)
    return RecordBook(app, _records_of(found, namespace), found["metadata"]["resourceVersion"])


def read_namespace(kube, namespace: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every app's records of the namespace in one LIST, oldest first, and a line per ConfigMap that is not ours."""
    found = _api(kube).items(_path(namespace), labels=f"{MANAGED_BY[0]}={MANAGED_BY[1]}")
    records, problems = [], []
    for obj in found:
        if not obj["metadata"]["name"].startswith(PREFIX):
            continue
        try:
            records += _records_of(obj, namespace)
        except RecordsNotOurs as exc:
            problems.append(exc.message)
    return oldest_first(records), problems


def update(kube, namespace: str, app: str, change: Callable[[RecordBook], bool]) -> RecordBook:
    """Apply `change` (it edits book.records, returns False when there is nothing to write) and write it
    conditionally; on a conflict read the newest version and apply the change again."""
    from manual_deploy.readiness.api import ReadError

    for attempt in range(WRITE_ATTEMPTS):
        book = read_book(kube, namespace, app)
        if not change(book):
            return book
        book.records = book.records[-KEEP:]
        try:
            _write(kube, namespace, book)
            return book
        except ReadError as exc:
            if not _raced(exc, book):
                raise
        time.sleep(random.uniform(0, CONFLICT_PAUSE_S * (attempt + 1)))
    raise OperationFailed(f"the records of {app} in {namespace} changed under every one of {WRITE_ATTEMPTS} writes")


def _raced(exc, book: RecordBook) -> bool:
    """Someone wrote or created it since we read it (409), or deleted it under our PUT (404). A 404 on the
    create is the namespace missing: no reading again mends that."""
    return exc.status == 409 or (exc.status == 404 and book.resource_version is not None)


def _write(kube, namespace: str, book: RecordBook) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": configmap_name(book.app), "labels": dict([MANAGED_BY])},
            "data": {DATA_KEY: json.dumps(book.records, sort_keys=True, separators=(",", ":"))}}
    if book.resource_version is None:
        _api(kube).write("POST", _path(namespace), body)  # 409 if someone created it meanwhile
    else:
        body["metadata"]["resourceVersion"] = book.resource_version
        _api(kube).write("PUT", _path(namespace, configmap_name(book.app)), body)


def merged(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new` over `old`, except: what gitlab-sync stored (on any machine) stays, and a record that has
    ended never goes back to "running" (a late start write, a re-pushed queue)."""
    if old is None:
        return new
    if new.get("result") == RUNNING and old.get("result") != RUNNING:
        return old
    return {**new, **{k: old[k] for k in TEAM_FIELDS if k in old and k not in new}}


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the team may read it: no secret the user handed us, no credentials in a URL."""
    secrets = env_secrets()

    def scrub(value):
        if isinstance(value, str):
            return redact(value, *secrets)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return scrub(record)


def upsert(kube, namespace: str, record: dict[str, Any]) -> None:
    """Write `record` (by its id) into its app's records, merged with what is already there."""
    record = clean(record)

    def put(book: RecordBook) -> bool:
        old = book.find(record["id"])
        new = merged(old, record)
        if new == old:
            return False
        book.records = oldest_first([r for r in book.records if r.get("id") != record["id"]] + [new])
        return True

    update(kube, namespace, str(record["app"]), put)
