"""The final check after helm said ready: a failing state goes the way of one found while helm waited
(named, its remedy, undone); what may settle later is a warning; anything else not ready fails."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from manual_deploy.console import Output
from manual_deploy.errors import OperationFailed
from manual_deploy.readiness.release_watch import Look
from manual_deploy.readiness.resource_state import Failure, ResourceState
from manual_deploy.release import operation

NS = "prod-environment"
DONE = ResourceState("Deployment", "ingest-core", True, "rolled out: 1/1 available")


class FakeWatch:
    """What the final check reads of a ReleaseWatch: the same look every time."""

    def __init__(self, look: Look, *, failing: Failure | None = None, settling=()):
        self.look, self.failing, self.settled = look, failing, list(settling)

    def check(self) -> Look:
        return self.look

    def failing_now(self) -> Failure | None:
        return self.failing

    def settling(self) -> list[ResourceState]:
        return self.settled

    def progress(self) -> str:
        return "waiting for " + "; ".join(f"{s.label}: {s.summary}" for s in self.look.states if not s.ready)

    def pods_not_running(self, image: str) -> list[str]:
        return []


@pytest.fixture
def helm(monkeypatch):
    monkeypatch.setattr(operation, "FINAL_CHECK_S", 0.0)
    tx = SimpleNamespace(out=Output(), guard=SimpleNamespace(env="prod", grace_s=3.0),
                         target=SimpleNamespace(namespace=NS), locks=SimpleNamespace(lost=lambda name: None))
    change = SimpleNamespace(app=SimpleNamespace(name="ingest-core"), expected_image="quay.io/ebi-ait/ingest-core:c1")
    return operation.WatchedHelm(tx), change


def test_a_failing_state_after_helm_is_returned_for_the_rollout_failure_path(helm):
    watched, change = helm
    suspended = ResourceState("CronJob", "update-project-catalogue", False, "suspended", failing="Suspended")
    failure = Failure("CronJob", "update-project-catalogue", "Suspended", "spec.suspend is true")
    watch = FakeWatch(Look(7, (DONE, suspended)), failing=failure)

    assert asyncio.run(watched.final_check(change, watch)) is failure


def test_what_may_settle_later_is_a_warning_and_the_deploy_succeeds(helm, capsys):
    watched, change = helm
    pending = ResourceState("Ingress", "ingest-core", False, "waiting for an address")
    watch = FakeWatch(Look(7, (DONE, pending)), settling=[pending])

    assert asyncio.run(watched.final_check(change, watch)) is None

    err = capsys.readouterr().err
    assert "warning: ingest-core: Ingress ingest-core: waiting for an address, not waited for" in err, err
    assert f"kubectl -n {NS} describe ingress ingest-core" in err, err


def test_anything_else_still_not_ready_fails(helm):
    watched, change = helm
    rolling = ResourceState("Deployment", "ingest-core", False, "1 of 2 updated replicas available")
    pending = ResourceState("Ingress", "ingest-core", False, "waiting for an address")
    watch = FakeWatch(Look(7, (rolling, pending)), settling=[pending])

    with pytest.raises(OperationFailed, match="helm reported success but it is still waiting for Deployment ingest-core"):
        asyncio.run(watched.final_check(change, watch))
