"""A deploy survives its own death: real manual-deploy processes, real signals, real helm, registry and git.

The one stand-in is the apiserver, here in a process of its own (tests/crashbed.py) so it can be frozen
like a cluster behind a dropped VPN. Each test asserts what the next engineer finds: the lock, the
release's status, the image that runs, the audit record, and that no helm process is left.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone

import pytest

from crashbed import BROKEN, apply_args, assert_back_on, broken_rollout, live_release, lock_asked
from helpers import wait_until

@pytest.mark.parametrize("signum, group, code, background", [
    (signal.SIGHUP, True, 129, False),  # the terminal was closed: the whole process group hears it
    (signal.SIGTERM, False, 143, False),  # `kill PID`
    (signal.SIGINT, False, 130, False),  # Ctrl-C
    (signal.SIGTERM, True, 143, True),  # started with `&` (SIGINT ignored), then `kill -- -PGID`
], ids=["SIGHUP-group", "SIGTERM-pid", "SIGINT-pid", "SIGTERM-group-background"])
def test_a_signal_mid_rollout_leaves_prod_on_the_previous_image_and_the_lock_free(crash_bed, signum, group, code, background):
    bed = crash_bed
    good = live_release(bed, "good1")
    run = broken_rollout(bed, background=background)
    time.sleep(1)

    run.signal(signum, group=group)

    assert run.finish(60) == code, run.err
    assert bed.leases() == []
    assert_back_on(bed, good)
    bed.helm_gone(timeout=5)
    name = signal.Signals(signum).name
    record = bed.audit()[-1]
    assert record["result"] == "interrupted" and record["message"].startswith(f"interrupted by {name} during upgrade+verify")
    assert f"interrupted by {name}" in run.err and "Traceback" not in run.err
    team = {r["id"]: r for r in bed.team_records()}
    assert team[record["id"]]["result"] == "interrupted" and team[record["id"]]["message"] == record["message"]


def test_a_signal_while_waiting_for_a_lock_changes_nothing_and_takes_no_lock(crash_bed):
    """The lock phase: bob's run stopped renewing 20 s ago, so alice's run waits for it to expire; SIGTERM then."""
    from kubernetes import client

    bed = crash_bed
    good = live_release(bed, "good1")
    bed.publish("good2")
    renewed = datetime.fromtimestamp(time.time() - 20, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000001Z")
    client.CoordinationV1Api(bed.api()).create_namespaced_lease("prod-environment", {
        "metadata": {"name": "manual-deploy-ingest-core"},
        "spec": {"holderIdentity": "bob@desk#7", "leaseDurationSeconds": 30, "acquireTime": renewed, "renewTime": renewed}})
    revisions, seen = len(bed.history()), len(bed.requests())

    run = bed.start(*apply_args("good2"))
    wait_until(lambda: lock_asked(bed, after=seen), 30, "the run to ask for the lock")
    time.sleep(1)
    run.signal(signal.SIGTERM)

    assert run.finish(30) == 143, (run.out, run.err)
    assert "stopped answering" in run.err, run.err[-2000:]  # it said why it waited
    assert [lease.spec.holder_identity for lease in bed.leases()] == ["bob@desk#7"]
    assert len(bed.history()) == revisions and bed.running_image() == good
    bed.helm_gone(timeout=5)


def test_after_a_sigkill_the_same_engineer_redeploys_at_once_without_flags(crash_bed):
    bed = crash_bed
    live_release(bed, "good1")
    run = broken_rollout(bed)
    new = bed.publish("good2")

    run.signal(signal.SIGKILL, group=True)
    run.finish(10)
    [dead] = [r for r in bed.team_records() if ":bad1" in r["image"]]  # no cleanup ran: the team sees what it was doing
    assert dead["result"] == "running" and dead["reason"] == "INC-7" and dead["old_revision"] == 1, dead
    again = bed.run(*apply_args("good2"))

    assert again.proc.returncode == 0, again.err
    died = [line for line in again.err.splitlines() if "died" in line]
    assert len(died) == 1 and f"#{run.proc.pid}'s apply (INC-7) died" in died[0] and "upgrade+verify" in died[0], again.err
    assert_back_on(bed, new)
    assert bed.leases() == []
    bed.helm_gone(timeout=5)


def test_after_a_sigkill_the_watchdog_stops_helm_and_a_colleague_deploys_once_the_lock_expires(crash_bed):
    bed = crash_bed
    good = live_release(bed, "good1")
    run = broken_rollout(bed)
    new = bed.publish("good2")

    run.signal(signal.SIGKILL, group=True)
    run.finish(10)
    bed.helm_gone(timeout=15)  # nobody stopped helm but the watchdog: SIGTERM, and helm rolled back
    assert_back_on(bed, good)

    early = bed.run(*apply_args("good2"), user="bob")  # the heartbeat is still fresh: it cannot know yet
    assert early.proc.returncode == 3, early.err
    assert "heartbeat" in early.err and "alice@" in early.err

    wait_until(lambda: heartbeat_age(bed) > 11, 20, "alice's heartbeat to go stale")
    bob = bed.run(*apply_args("good2"), user="bob")
    assert bob.proc.returncode == 0, bob.err
    assert "alice@" in bob.err and "stopped answering" in bob.err, bob.err
    assert_back_on(bed, new)
    assert bed.leases() == []
    assert bed.audit("bob")[-1]["lock_broken_from"].startswith("alice@")


def heartbeat_age(bed) -> float:
    leases = bed.leases()
    return (datetime.now(timezone.utc) - leases[0].spec.renew_time).total_seconds() if leases else 0.0


def test_a_colleagues_break_lock_recover_takes_over_a_live_pending_deploy(crash_bed):
    bed = crash_bed
    live_release(bed, "good1")
    alice = broken_rollout(bed)
    new = bed.publish("good2")

    bob = bed.run(*apply_args("good2", "--break-lock", "--recover"), user="bob")

    assert bob.proc.returncode == 0, bob.err
    assert alice.finish(60) == 3, alice.err
    assert "taken over by bob@" in alice.err, alice.err
    assert_back_on(bed, new)
    assert bed.leases() == []
    bed.helm_gone(timeout=5)
    assert bed.audit()[-1]["result"] == "interrupted" and "taken over by bob@" in bed.audit()[-1]["message"]


def test_sigterm_mid_rollback_goes_back_to_what_ran(crash_bed):
    """rollback runs the same guarded sequence: a SIGTERM while its target revision's pods crash
    leaves the revision that ran before, deployed, and the lock free."""
    bed = crash_bed
    live_release(bed, "good1")
    now = bed.publish("good2")
    assert bed.run(*apply_args("good2")).proc.returncode == 0
    bed.fail("*:good1*", "CrashLoopBackOff")  # the revision we go back to no longer starts

    run = bed.start("rollback", "--env", "prod", "--app", "ingest-core", "--yes", "--reason", "INC-8", *BROKEN)
    wait_until(lambda: bed.history()[-1]["status"] == "pending-rollback", 60, "helm to start the rollback")
    time.sleep(1)
    run.signal(signal.SIGTERM)

    assert run.finish(60) == 143, run.err
    assert bed.leases() == []
    assert_back_on(bed, now)
    bed.helm_gone(timeout=5)
    record = bed.audit()[-1]
    assert record["command"] == "rollback" and record["result"] == "interrupted", record


def test_sigterm_mid_promote_leaves_prod_on_what_ran(crash_bed):
    """promote goes through apply's path: staging's healthy image crashes in prod (its pods there are new),
    and a SIGTERM while prod waits on them leaves prod's previous image deployed and the lock free."""
    bed = crash_bed
    good = live_release(bed, "good1")
    bed.publish("stg1")
    staged = bed.run("apply", "--env", "staging", "--app", "ingest-core", "--tag", "stg1", "--yes")
    assert staged.proc.returncode == 0, staged.err
    bed.fail("*:stg1*", "CrashLoopBackOff")  # from now on: staging's running pods are fine, new ones crash

    run = bed.start("promote", "--from", "staging", "--to", "prod", "--app", "ingest-core", "--yes", "--reason", "INC-9",
                    *BROKEN)
    wait_until(lambda: bed.history()[-1]["status"] == "pending-upgrade", 60, "helm to start prod's upgrade")
    time.sleep(1)
    run.signal(signal.SIGTERM)

    assert run.finish(60) == 143, run.err
    assert bed.leases() == []
    assert_back_on(bed, good)
    bed.helm_gone(timeout=5)
    record = bed.audit()[-1]
    assert record["command"] == "promote" and record["result"] == "interrupted", record
