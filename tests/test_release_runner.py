"""The guarded release sequence, tested once for every verb that goes through it.

Everything below is real (helm, the registry, the emulated cluster, the webhook stand-in); the only
change is that the steps of the sequence also note their name in a list when they run, so the order can
be read off: confirm → lock → notify start → helm → final check → (undo) → unlock → audit → notify end.
"""

from __future__ import annotations

import pytest

from bed import apply, publish
from manual_deploy_sandbox.webhook import WebhookSink


@pytest.fixture
def steps(monkeypatch):
    """Wrap each step of the sequence so that it records its name, then does exactly what it did."""
    from manual_deploy import audit, lock, notify
    from manual_deploy.helm import HelmDriver
    from manual_deploy.release import operation, runner

    seen: list[str] = []

    def note(step: str | None) -> None:
        if step is not None:  # None: a call that does nothing (a lock given back twice)
            seen.append(step)

    def recording(owner, name, label):
        real = getattr(owner, name)
        if hasattr(real, "__code__") and real.__code__.co_flags & 0x80:  # a coroutine function

            async def wrapper(*args, **kwargs):
                note(label(*args, **kwargs) if callable(label) else label)
                return await real(*args, **kwargs)
        else:

            def wrapper(*args, **kwargs):
                note(label(*args, **kwargs) if callable(label) else label)
                return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    recording(runner, "confirm_env", "confirm")
    recording(lock.DeployLock, "acquire", "lock")
    recording(lock.DeployLock, "release", lambda self: "unlock" if self._held else None)
    recording(notify.Notifier, "send", lambda self, event, **kw: f"notify {event}")
    recording(HelmDriver, "upgrade", "helm upgrade")
    recording(HelmDriver, "rollback", "helm rollback")
    recording(HelmDriver, "uninstall", "helm uninstall")
    recording(operation.WatchedHelm, "final_check", "final check")
    recording(runner.ReleaseTransaction, "undo", "undo")
    recording(runner.audit, "record", lambda entry, **kw: f"audit {entry['result']}")
    assert runner.audit is audit
    return seen


@pytest.fixture
def webhook(monkeypatch):
    with WebhookSink() as sink:
        monkeypatch.setenv("MANUAL_DEPLOY_WEBHOOK_URL", sink.url)
        yield sink


def test_apply_runs_the_sequence_in_order(cli, bed, steps, webhook):
    publish(bed, "ingest-core", "seq1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "seq1", "--yes")
    assert result.code == 0, result.stderr
    assert steps == ["lock", "confirm", "notify start", "helm upgrade", "final check", "unlock", "audit deployed",
                     "notify success"]
    assert [m["event"] for m in webhook.messages] == ["start", "success"]


def test_a_failed_rollout_is_undone_before_the_unlock_and_the_record(cli, bed, steps, webhook):
    publish(bed, "ingest-core", "seq2")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "seq2", "--yes").code == 0
    publish(bed, "ingest-core", "seq3")
    bed.kube.add_failure("*:seq3*", "CrashLoopBackOff")
    steps.clear()

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "seq3", "--yes", "--grace", "2s")

    assert result.code == 1, result.stderr
    helm_undo = steps.index("undo")
    assert steps[:4] == ["lock", "confirm", "notify start", "helm upgrade"], steps
    assert "final check" not in steps  # the rollout failed before helm said ready
    assert steps[helm_undo:] in (["undo", "unlock", "audit failed", "notify failure"],
                                 ["undo", "helm rollback", "unlock", "audit failed", "notify failure"]), steps


def test_rollback_runs_the_same_sequence_with_the_lock_before_the_message(cli, bed, steps, webhook):
    """Rollback used to announce itself before it held the lock and skipped the final check."""
    for tag in ("seq4", "seq5"):
        publish(bed, "ingest-core", tag)
        assert apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes").code == 0
    steps.clear()
    webhook.messages.clear()

    result = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes")

    assert result.code == 0, result.stderr
    assert steps == ["lock", "confirm", "notify start", "helm rollback", "final check", "unlock", "audit rolled back",
                     "notify success"]
    assert [(m["event"], m["command"]) for m in webhook.messages] == [("start", "rollback"), ("success", "rollback")]


def test_with_a_prompt_the_lock_is_taken_only_after_the_answer(cli, bed, steps, monkeypatch):
    """prod asks for its name to be typed: nobody's deploy is blocked while the prompt is open."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("prod\n"))
    publish(bed, "ingest-core", "seq6")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "seq6")
    assert result.code == 0, result.stderr
    assert steps[:3] == ["confirm", "lock", "notify start"], steps
