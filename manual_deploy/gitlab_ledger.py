"""Which team records GitLab should get, and where the answer is kept: in the record in the cluster, shared
by every engineer; or, for a record only this machine's queue holds, in this machine's SyncMemory.

`gitlab-sync` and a deploy's own GitLab step read each env's records here (its cluster after this
machine's queue is pushed into it, plus what is still queued). A record reaching the cluster takes
along what this machine's memory knows of it (the push's `extra`), and a record seen in the cluster
without the outcome this machine's memory holds gets it written: the team never posts it again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from manual_deploy import deploy_records, gitlab_claims, record_queue
from manual_deploy.config import Config
from manual_deploy.gitlab_claims import ClaimAnswer
from manual_deploy.gitlab_records import SYNC, ManualDeploy, SyncMemory
from manual_deploy.record_queue import TeamEnv


def connect(config: Config, env: str, kubeconfig: str | None, out) -> TeamEnv:
    """The env's API client (as `status` and `history` connect); a warning and the local queue when none."""
    team, why = record_queue.reach(config, env, kubeconfig)
    if why is not None:
        out.warn(f"{env}: cluster not reached ({why}); {_LOCAL_ONLY.format(env=env)}")
    return team


_LOCAL_ONLY = ("only this machine's queued records of {env} can be recorded now (its own memory keeps what is posted); "
               f"the team's records of {{env}} wait for a `{SYNC}` that reaches its cluster")


def memory_fields(entry: dict[str, Any] | None) -> dict[str, Any]:
    """A SyncMemory entry as the fields of a team record (`gitlab` or `skipped`); {} for none."""
    if not entry:
        return {}
    by, at = entry.get("by") or gitlab_claims.me(), entry.get("at")
    if entry.get("outcome") == "skipped":
        return {"skipped": {"by": by, "at": at, "why": entry.get("why")}}
    return {"gitlab": {"deployment_id": entry.get("deployment_id"), "iid": entry.get("iid"), "outcome": entry.get("outcome"),
                       "status": entry.get("status"), "by": by, "at": at}}


class Ledger:
    """Every record read, with its home: a TeamEnv whose cluster holds it, or None (only the local queue)."""

    def __init__(self, memory: SyncMemory | None = None):
        self.memory = memory or SyncMemory()
        self.records: dict[str, dict[str, Any]] = {}
        self.homes: dict[str, TeamEnv | None] = {}

    # reading ------------------------------------------------------------------------------------

    def read(self, team: TeamEnv, out) -> None:
        """The env's records: the cluster's (after pushing this machine's queue, with what its memory knows),
        and the queued ones. A cluster that cannot be read leaves only the queued ones: the others are
        the cluster's, which nobody can claim from here."""
        found = record_queue.read_team(team.kube, team.namespace, team.env,
                                       extra=lambda r: memory_fields(self.memory.get(r["id"])))
        for line in found.problems:
            out.warn(f"{team.env}: {line}")
        if team.kube is not None and not found.cluster_read:
            out.warn(f"{team.env}: {_LOCAL_ONLY.format(env=team.env)}")
        for record in found.records:
            if record.get("queued") or found.cluster_read:
                self.records[record["id"]] = record
                self.homes[record["id"]] = None if record.get("queued") else team

    def read_all(self, teams: list[TeamEnv], out) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(teams))) as pool:
            for _ in pool.map(lambda team: self.read(team, out), teams):
                pass

    def deploys(self, config: Config, env: str | None = None, app: str | None = None) -> list[ManualDeploy]:
        """The records GitLab should know of, oldest first (a "running" one is not: its run has not ended)."""
        found = (ManualDeploy.from_record(r, config) for r in deploy_records.oldest_first(self.records.values()))
        return [d for d in found if d and (env is None or d.env == env) and (app is None or d.app == app)]

    def pending(self, deploys: list[ManualDeploy]) -> list[ManualDeploy]:
        return [d for d in deploys if self.outcome(d.key) is None]

    def find(self, prefix: str) -> list[dict[str, Any]]:
        """The records whose id is `prefix` or starts with it."""
        return [r for key, r in self.records.items() if key == prefix or key.startswith(prefix)]

    # what is known --------------------------------------------------------------------------------

    def outcome(self, key: str) -> dict[str, Any] | None:
        """The record's settled outcome (the cluster's first, then this machine's memory); None: not settled."""
        record = self.records.get(key)
        settled = gitlab_claims.outcome_of(record) if record else None
        if settled is not None:
            return settled
        entry = self.memory.get(key)
        return {"kind": "skipped" if entry.get("outcome") == "skipped" else "gitlab", **entry} if entry else None

    def claimed_ids(self) -> set[int]:
        """GitLab deployment ids already standing for some record: never adopted for another."""
        ids = {r["gitlab"].get("deployment_id") for r in self.records.values() if isinstance(r.get("gitlab"), dict)}
        return self.memory.claimed() | {i for i in ids if isinstance(i, int)}

    def holder(self, deploy: ManualDeploy) -> str | None:
        """Who is recording the record now, as read (for a dry run, which claims nothing)."""
        held = gitlab_claims.fresh_claim(self.records.get(deploy.key) or {})
        return str(held.get("by") or "?") if held else None

    # writing --------------------------------------------------------------------------------------

    def share_memory(self, out) -> None:
        """Write into the cluster what this machine's memory knows of records that reached it without it
        (posted while only queued here, then pushed by a command that did not carry it)."""
        for key, record in self.records.items():
            team, fields = self.homes.get(key), memory_fields(self.memory.get(key))
            if team is None or not fields or gitlab_claims.outcome_of(record) is not None:
                continue
            try:
                if "gitlab" in fields:
                    gitlab_claims.settle(team.kube, team.namespace, record["app"], key, fields["gitlab"])
                else:
                    gitlab_claims.skip(team.kube, team.namespace, record["app"], key, fields["skipped"])
                record.update(fields)
            except Exception as exc:  # noqa: BLE001 - the memory keeps it; the next sync writes it
                out.debug(f"{team.env}: record {key[:12]}'s GitLab outcome not shared yet: {exc}")

    def claim(self, deploy: ManualDeploy) -> ClaimAnswer:
        """Make the record ours to post. One only in this machine's queue is ours alone."""
        team = self.homes.get(deploy.key)
        if team is None:
            return ClaimAnswer(mine=True)
        answer = gitlab_claims.claim(team.kube, team.namespace, deploy.app, deploy.key)
        if answer.settled is not None:
            self.records[deploy.key][answer.settled["kind"]] = {k: v for k, v in answer.settled.items() if k != "kind"}
        return answer

    def release(self, deploy: ManualDeploy) -> None:
        """Drop our claim on a record kept for a later run; a cluster gone now lets the claim go stale instead."""
        team = self.homes.get(deploy.key)
        if team is None:
            return
        try:
            gitlab_claims.release(team.kube, team.namespace, deploy.app, deploy.key)
        except Exception:  # noqa: BLE001 - stale after CLAIM_STALE_S, then anyone takes it over
            pass

    def remember(self, deploy: ManualDeploy, **info: Any) -> str | None:
        """GitLab's outcome of the record: in this machine's memory (`status` reads it offline) and in the
        cluster's record, for the team. A cluster write that fails leaves the memory's copy to share with
        this machine's next sync (meanwhile GitLab's list tells anyone else's sync it is there): the
        failure is returned as one line."""
        from manual_deploy.kube import error_line

        self.memory.remember(deploy.key, project=deploy.project, by=gitlab_claims.me(), **info)
        team, fields = self.homes.get(deploy.key), memory_fields(self.memory.get(deploy.key))
        if deploy.key in self.records:
            self.records[deploy.key].update(fields)
        if team is None:
            return None
        try:
            gitlab_claims.settle(team.kube, team.namespace, deploy.app, deploy.key, fields["gitlab"])
        except Exception as exc:  # noqa: BLE001 - GitLab has it; only the team's copy of the answer waits
            return (f"{deploy.env} {deploy.app}: GitLab's answer not written into the team's record {deploy.key[:12]} "
                    f"({error_line(exc)}); this machine's next `{SYNC}` writes it")
        return None

    def skip(self, record: dict[str, Any], why: str) -> ClaimAnswer:
        """Mark the record skipped, with who and why: in its cluster record, or in memory while only queued."""
        skipped = {"by": gitlab_claims.me(), "at": gitlab_claims.now_iso(), "why": why}
        team = self.homes.get(record["id"])
        if team is None:
            self.memory.remember(record["id"], outcome="skipped", by=skipped["by"], why=why)
            return ClaimAnswer(mine=True, settled={"kind": "skipped", **skipped})
        return gitlab_claims.skip(team.kube, team.namespace, record["app"], record["id"], skipped)
