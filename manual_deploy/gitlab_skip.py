"""`gitlab-sync --skip ID --reason TEXT`: a person says a record can never be posted, so it stops blocking.

A stream's records are posted oldest first, and one GitLab cannot take keeps every newer one waiting
(posting them first would leave the Environments page on the wrong deploy). Most such waits end by
themselves (a mirror catches up); a record whose image tag no git tag names never does. Skipping it
writes who and why into the team's record (or, while only this machine's queue holds it, into this
machine's memory, which the push carries into the cluster): no machine posts it, and the newer ones go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from manual_deploy.config import Config
from manual_deploy.errors import OperationFailed, UsageError
from manual_deploy.gitlab_ledger import Ledger
from manual_deploy.gitlab_records import SYNC, ManualDeploy
from manual_deploy.gitlab_sync import envs_of, read_ledger

RECORD_ID = re.compile(r"[0-9a-f]{8,}|h[0-9a-f]{7,}")  # a uuid hex id, or an old record's "h" + hash; 8 chars at least
WHERE_IDS = f"record ids are shown by `{SYNC} --dry-run` and `manual-deploy history`"


@dataclass(frozen=True)
class SkipRequest:
    record: str
    reason: str
    env: str | None = None
    app: str | None = None
    kubeconfig: str | None = None


def check_options(skip: str | None, reason: str | None, dry_run: bool) -> None:
    """What the options must be before anything is read or written: --skip needs --reason, and the reverse."""
    if skip is None:
        if reason is not None:
            raise UsageError("--reason goes with --skip ID: it says why that record is never to be posted",
                             hint=f"`{SYNC} --skip ID --reason \"…\"`; {WHERE_IDS}")
        return
    if dry_run:
        raise UsageError("--skip and --dry-run do not go together: --skip posts nothing anyway",
                         hint=f"see the records first with `{SYNC} --dry-run`, then `{SYNC} --skip ID --reason \"…\"`")
    if not (reason or "").strip():
        raise UsageError(f"--skip {skip} needs --reason: the team sees who skipped a record and why",
                         hint=f"`{SYNC} --skip {skip} --reason \"image tagged by hand, no git tag\"`")
    if not RECORD_ID.fullmatch(skip.lower()):
        raise UsageError(f"--skip {skip!r} is not a record id: a record's id, or its first 8 or more hex characters",
                         hint=WHERE_IDS)


def pick(ledger: Ledger, wanted: str, envs: list[str], app: str | None = None) -> dict[str, Any]:
    """The one record (of `app`, when given) whose id is `wanted` or starts with it; unknown or ambiguous is a
    usage error."""
    found = [r for r in ledger.find(wanted.lower()) if app is None or r.get("app") == app]
    if not found:
        raise UsageError(f"no record {wanted} in the team's records of {', '.join(envs)}; nothing skipped", hint=WHERE_IDS)
    if len(found) > 1:
        ids = ", ".join(f"{r['id'][:16]} ({r.get('env')} {r.get('app')} {r.get('at')})" for r in found)
        raise UsageError(f"--skip {wanted} matches {len(found)} records: {ids}; nothing skipped",
                         hint="give more of the id's characters")
    return found[0]


def run_skip(config: Config, request: SkipRequest, out) -> dict[str, Any]:
    """Mark the record skipped; the answer names it and who skipped it why."""
    envs = envs_of(config, request.env, request.app)
    ledger = read_ledger(config, envs, request.kubeconfig, out)
    record = pick(ledger, request.record, envs, request.app)
    deploy = ManualDeploy.from_record(record, config)
    name = f"record {record['id'][:12]}"
    if deploy is None:
        raise UsageError(f"{name} ({record.get('command')} of {record.get('app')} in {record.get('env')}: {record.get('result')}) "
                         "is not one GitLab records; nothing to skip", hint=WHERE_IDS)
    settled, ours = ledger.outcome(deploy.key), False
    if settled is None:
        answer = ledger.skip(record, request.reason.strip())
        if answer.holder is not None:
            raise OperationFailed(f"{name} is being recorded by {answer.holder}'s gitlab-sync right now; nothing skipped",
                                  hint=f"see what it did with `{SYNC} --dry-run` in a few minutes")
        if answer.gone:
            raise OperationFailed(f"{name} is no longer in the team's records of {deploy.env}; nothing skipped")
        settled, ours = answer.settled or {}, answer.mine
    if settled.get("kind") == "gitlab":
        raise UsageError(f"{name} is already in GitLab (deployment #{settled.get('iid')}, {settled.get('outcome')}); nothing to skip")
    if ours:
        out.success(f"skipped {deploy.describe()}: it is never posted, and the newer records of {deploy.app} in "
                    f"{deploy.env} no longer wait for it")
    else:
        out.success(f"{name} was already skipped by {settled.get('by')}: {settled.get('why')}")
    return {"skipped": {"record": deploy.key, "env": deploy.env, "app": deploy.app, "ref": deploy.ref, "command": deploy.command,
                        "at": deploy.at.isoformat(), "by": settled.get("by"), "why": settled.get("why"),
                        "kept_in": "this machine's queue" if record.get("queued") else "the team's records"}}
