"""A network blip is ridden out: the apiserver frozen (SIGSTOP) for 25 s, as a dropped VPN freezes a real one.

Real manual-deploy processes, real helm, registry and git; the one stand-in is the apiserver, here in a
process of its own (tests/crashbed.py) so it can be frozen: TCP still connects, TLS never answers.
"""

from __future__ import annotations

import pytest

from crashbed import apply_args, assert_back_on, live_release, lock_taken
from helpers import wait_until


def test_the_api_frozen_for_25_s_right_after_the_lock_is_taken_still_deploys(crash_bed):
    bed = crash_bed
    live_release(bed, "good1")
    new = bed.publish("good2")

    seen = len(bed.requests())
    run = bed.start(*apply_args("good2"))
    wait_until(lambda: lock_taken(bed, after=seen), 30, "the lock to be taken")
    with bed.frozen(25):
        pass

    assert run.finish(180) == 0, run.err
    assert_back_on(bed, new)
    assert bed.leases() == []
    assert "cannot renew the deploy lock" in run.err, run.err  # it said so, and went on


def test_the_api_frozen_when_the_run_starts_is_waited_for_within_the_timeout(crash_bed):
    """Frozen before the first request: the plan's read and the lock are retried, saying so, until it answers."""
    bed = crash_bed
    live_release(bed, "good1")
    new = bed.publish("good2")

    with bed.frozen(25):
        run = bed.start(*apply_args("good2"))

    assert run.finish(180) == 0, run.err
    assert "cluster unreachable" in run.err and "retrying in" in run.err, run.err
    assert_back_on(bed, new)
    assert bed.leases() == []


@pytest.mark.parametrize("helm", ["helm3", "helm4"], indirect=True)
def test_the_api_frozen_for_25_s_during_the_rollout_still_deploys(tmp_path, registry, deploy_repo, helm):
    """Pods take 6 s to start, so the freeze lands while helm and the watch wait for the rollout."""
    from crashbed import make_crash_bed, stop_emulator

    proc, bed = make_crash_bed(tmp_path, registry, deploy_repo, helm, pod_start_delay=6)
    try:
        live_release(bed, "good1")
        new = bed.publish("good2")
        seen = len(bed.requests())
        run = bed.start(*apply_args("good2"))
        wait_until(lambda: any(r["method"] in ("PATCH", "PUT") and "/deployments/" in r["path"] for r in bed.requests()[seen:]),
                   60, "helm to write the Deployment")
        with bed.frozen(25):
            pass

        assert run.finish(180) == 0, run.err
        assert "cannot renew the deploy lock" in run.err, run.err  # it said so, and went on
        assert_back_on(bed, new)
        assert bed.leases() == []
        bed.helm_gone(timeout=5)
    finally:
        bed.close()
        stop_emulator(proc)
