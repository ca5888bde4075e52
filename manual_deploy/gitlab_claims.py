"""GitLab's outcome of a team record, written into the record itself in the cluster: claim, outcome, skip.

Any engineer may run `gitlab-sync`, from any machine, at the same moment as a colleague; GitLab must get
each deploy once. So a sync CLAIMS a record before posting it: a write conditional on the records'
resourceVersion (deploy_records.update) that sets `claim` only where there is no outcome and no fresh
claim of someone else. Of two syncs writing at once, one gets 409, reads again, sees the other's claim
and leaves the record (and the newer ones of its stream) to it. After posting, the outcome (`gitlab`)
replaces the claim, again conditionally. A claim older than CLAIM_STALE_S is a sync that died: it is
taken over, and the caller reads GitLab's own list again, so a POST the dead sync made is found, not
repeated.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from manual_deploy import deploy_records
from manual_deploy.timestamps import parse_time

CLAIM_STALE_S = 120  # far above one record's GitLab calls (bounded by the client's timeouts)
RUN = uuid.uuid4().hex  # this process: two syncs of one user on one machine are two claimants


def me() -> str:
    """Who a claim, an outcome or a skip is by: the same words as a record's user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fresh_claim(record: dict[str, Any], now: datetime | None = None) -> dict[str, Any] | None:
    """Someone else's claim on `record` that is still alive (younger than CLAIM_STALE_S); None otherwise."""
    claim = record.get("claim")
    if not isinstance(claim, dict) or claim.get("run") == RUN:
        return None
    at = parse_time(claim.get("at"))
    now = now or datetime.now(timezone.utc)
    if at is None or (now - at).total_seconds() >= CLAIM_STALE_S:
        return None
    return claim


@dataclass
class ClaimAnswer:
    """What claiming a record found: ours to post, someone else's, or already settled."""

    mine: bool = False
    holder: str | None = None  # who is recording it now, when it is not ours
    settled: dict[str, Any] | None = None  # the record's outcome (`gitlab` or `skipped`) written meanwhile
    took_over: str | None = None  # whose stale claim we replaced: GitLab's list must be read again
    gone: bool = False  # the record is no longer in the cluster (trimmed beyond deploy_records.KEEP)


def _ours(record: dict[str, Any]) -> bool:
    claimed = record.get("claim")
    return isinstance(claimed, dict) and claimed.get("run") == RUN


def outcome_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's settled outcome: GitLab's answer, or a person's skip."""
    if isinstance(record.get("gitlab"), dict):
        return {"kind": "gitlab", **record["gitlab"]}
    if isinstance(record.get("skipped"), dict):
        return {"kind": "skipped", **record["skipped"]}
    return None


def _blocked(record: dict[str, Any] | None) -> ClaimAnswer | None:
    """Why nobody may claim or skip `record` now (gone, settled, or freshly claimed by someone else); None: free."""
    if record is None:
        return ClaimAnswer(gone=True)
    settled = outcome_of(record)
    if settled is not None:
        return ClaimAnswer(settled=settled)
    held = fresh_claim(record)
    if held is not None:
        return ClaimAnswer(holder=str(held.get("by") or "?"))
    return None


def claim(kube, namespace: str, app: str, record_id: str) -> ClaimAnswer:
    """Claim the record for this process, unless it is settled or freshly claimed by someone else.

    The change decides from what it reads on every attempt: after a 409 the winner's claim is seen."""
    answer = ClaimAnswer()

    def change(book: deploy_records.RecordBook) -> bool:
        nonlocal answer
        record = book.find(record_id)
        blocked = _blocked(record)
        if blocked is not None:
            answer = blocked
            return False
        old = record.get("claim")
        stale = str(old.get("by") or "?") if isinstance(old, dict) and not _ours(record) else None
        record["claim"] = {"by": me(), "at": now_iso(), "run": RUN}
        answer = ClaimAnswer(mine=True, took_over=stale)
        return True

    deploy_records.update(kube, namespace, app, change)
    return answer


def settle(kube, namespace: str, app: str, record_id: str, gitlab: dict[str, Any]) -> None:
    """Store GitLab's outcome in the record and drop the claim. An outcome already there stays: it is
    GitLab's answer to whoever posted first."""

    def change(book: deploy_records.RecordBook) -> bool:
        record = book.find(record_id)
        if record is None:
            return False
        changed = not isinstance(record.get("gitlab"), dict)
        if changed:
            record["gitlab"] = gitlab
        if _ours(record):
            record.pop("claim")
            changed = True
        return changed

    deploy_records.update(kube, namespace, app, change)


def release(kube, namespace: str, app: str, record_id: str) -> None:
    """Drop this process's claim (the record is kept for a later run); anyone else's claim stays."""

    def change(book: deploy_records.RecordBook) -> bool:
        record = book.find(record_id)
        if record is None or not _ours(record):
            return False
        record.pop("claim")
        return True

    deploy_records.update(kube, namespace, app, change)


def skip(kube, namespace: str, app: str, record_id: str, skipped: dict[str, Any]) -> ClaimAnswer:
    """Mark the record skipped, unless GitLab already has it or a sync is recording it right now.
    Returns what was found: `settled` (the skip itself when it was written), or the `holder`."""
    answer = ClaimAnswer()

    def change(book: deploy_records.RecordBook) -> bool:
        nonlocal answer
        record = book.find(record_id)
        blocked = _blocked(record)
        if blocked is not None:
            answer = blocked
            return False
        record["skipped"] = skipped
        record.pop("claim", None)
        answer = ClaimAnswer(mine=True, settled={"kind": "skipped", **skipped})
        return True

    deploy_records.update(kube, namespace, app, change)
    return answer
