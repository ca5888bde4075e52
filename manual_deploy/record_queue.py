"""What this machine recorded that the cluster has not got yet: the audit log, read as a queue.

A record whose write to the cluster failed (the VPN dropped at the end of a deploy, a records
ConfigMap someone broke) waits in the local audit log. The next command that reaches the env's
cluster pushes it; pushing is an upsert by the record's id, so a second push changes nothing, and
what was pushed is remembered by id in `records-pushed.json` beside the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from manual_deploy import audit, deploy_records, paths
from manual_deploy.jsonfile import write_atomic

PUSHED_FILE = "records-pushed.json"


def _pushed_path():
    return paths.state_dir() / PUSHED_FILE


def pushed_ids() -> set[str]:
    try:
        data = json.loads(_pushed_path().read_text())
    except (OSError, ValueError):
        return set()
    return set(data) if isinstance(data, list) else set()


def mark_pushed(*ids: str) -> None:
    """Remember ids the cluster now holds (read, add, replace: a concurrent run loses at most a mark, which
    costs one idempotent push more)."""
    write_atomic(_pushed_path(), sorted(pushed_ids() | set(ids)))


def local_records(env: str) -> list[dict[str, Any]]:
    """This machine's records of `env`, oldest first, each with its id; those the cluster has not
    acknowledged are marked "queued" (a mark that never goes into the cluster)."""
    done = pushed_ids()
    found = []
    for record in audit.read():
        if record.get("env") == env and record.get("app"):
            key = audit.record_key(record)
            found.append({**record, "id": key} if key in done else {**record, "id": key, "queued": True})
    return found


def _unqueued(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the cluster holds it: without this machine's "queued" mark."""
    return {k: v for k, v in record.items() if k != "queued"}


def queued(env: str) -> list[dict[str, Any]]:
    """This machine's records of `env` the cluster has not acknowledged, oldest first, each with its id."""
    return [r for r in local_records(env) if r.get("queued")]


def push(kube, namespace: str, env: str, *, extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[str]:
    """Push the env's queue into its cluster; returns a line per record left queued and why."""
    return _push(kube, namespace, env, queued(env), extra)[1]


def _push(kube, namespace: str, env: str, waiting: list[dict[str, Any]],
          extra: Callable[[dict[str, Any]], dict[str, Any]] | None) -> tuple[set[str], list[str]]:
    """Push `waiting` (queued records of `env`); the ids the cluster now holds, and a line per record left queued.

    `extra` adds what this machine alone knew about a record (a GitLab id stored while the cluster
    was away). A transport failure stops the push (the rest waits for the next command)."""
    from manual_deploy.kube import error_line

    left, done = [], []
    for record in waiting:
        shared = _unqueued(record)
        try:
            deploy_records.upsert(kube, namespace, {**shared, **(extra(shared) if extra else {})})
        except deploy_records.RecordsNotOurs as exc:
            left.append(f"{record['app']} record {record['id'][:12]} kept in the local queue: {exc.message}")
            continue
        except Exception as exc:  # noqa: BLE001 - unreachable, refused: every record waits for the next command
            left.append(f"{len(waiting) - len(done)} record(s) of {env} kept in the local queue ({error_line(exc)})")
            break
        done.append(record["id"])
    if done:
        mark_pushed(*done)
    return set(done), left


@dataclass(frozen=True)
class TeamEnv:
    """One env's records as a command reaches them: `kube` None when its cluster could not be reached."""

    env: str
    namespace: str
    kube: Any = None


def reach(config, env: str, kubeconfig: str | None) -> tuple[TeamEnv, str | None]:
    """The env's API client, or none and why (no context, no credentials): then this machine's records are
    what there is, and the caller says so in its own words."""
    from manual_deploy.errors import ManualDeployError
    from manual_deploy.kube import api_client, error_line, resolve_target

    try:
        target = resolve_target(config, env, kubeconfig=kubeconfig)
        return TeamEnv(env, target.namespace, api_client(target)), None
    except Exception as exc:  # noqa: BLE001 - any failure leaves the local records
        return TeamEnv(env, config.environment(env).namespace), exc.message if isinstance(exc, ManualDeployError) else error_line(exc)


def team_records(kube, namespace: str, env: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Everything the team recorded in `env` (its cluster, after this machine's queue is pushed into it) plus
    what still waits here (marked "queued"); oldest first, one per id. When the cluster cannot be read (`kube`
    None, or the read fails): this machine's own records of `env`, the best there is. And a line per problem
    (a ConfigMap that is not ours, records kept queued, the cluster not read)."""
    found = read_team(kube, namespace, env)
    return found.records, found.problems


@dataclass
class TeamRecords:
    """The team's records of one env as read, and whether its cluster answered: without it, the records
    not marked "queued" are this machine's copies of what the cluster holds, and nobody can claim them."""

    records: list[dict[str, Any]]
    problems: list[str]
    cluster_read: bool


def read_team(kube, namespace: str, env: str, *, extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> TeamRecords:
    """`team_records`, saying whether the cluster was read; `extra` as for `push`. The local log is read once."""
    problems: list[str] = []
    local = local_records(env)
    cluster = None
    if kube is not None:
        pushed, left = _push(kube, namespace, env, [r for r in local if r.get("queued")], extra)
        problems += left
        local = [_unqueued(r) if r["id"] in pushed else r for r in local]
        try:
            cluster, broken = deploy_records.read_namespace(kube, namespace)
            problems += broken
        except Exception as exc:  # noqa: BLE001 - a cluster that cannot be read: this machine's log is what we know
            from manual_deploy.kube import error_line

            problems.append(f"the team's records not read ({error_line(exc)}); showing this machine's only")
    if cluster is None:
        return TeamRecords(local, problems, cluster_read=False)
    known = {r["id"] for r in cluster}
    found = cluster + [r for r in local if r.get("queued") and r["id"] not in known]
    return TeamRecords(deploy_records.oldest_first(found), problems, cluster_read=True)
