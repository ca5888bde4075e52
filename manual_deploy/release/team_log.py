"""This run's records in the team's log in the cluster: "running" when an app's change starts, complete at its end.

Every write runs in a thread beside the work (helm never waits for one), and none can fail the run: a
record the cluster could not take stays in the local queue (the audit log), and this machine's next
command that reaches the env pushes it. A run that dies leaves its "running" record: what it was doing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from manual_deploy import deploy_records, record_queue
from manual_deploy.deploy_records import RUNNING

FINISH_WAIT_S = 15.0  # the completing write, at the end of the run: bounded, then left to the queue


class TeamLog:
    def __init__(self, kube_client: Callable[[], Any], namespace: str, env: str, out):
        self.kube_client, self.namespace, self.env, self.out = kube_client, namespace, env, out
        self._queue: asyncio.Task | None = None

    def push_queue(self) -> None:
        """Start pushing what earlier runs on this machine left queued for this env."""
        if self._queue is None:
            self._queue = asyncio.create_task(asyncio.to_thread(self._push_queue))

    def _push_queue(self) -> list[str]:
        return record_queue.push(self.kube_client(), self.namespace, self.env)

    def start(self, record: dict[str, Any]) -> asyncio.Task:
        """Write `record` as running; the task's failure is only looked at by `finish`."""
        return asyncio.create_task(asyncio.to_thread(self._write, {**record, "result": RUNNING}))

    def _write(self, record: dict[str, Any]) -> None:
        deploy_records.upsert(self.kube_client(), self.namespace, record)

    async def finish(self, line: dict[str, Any], started: asyncio.Task | None) -> None:
        """Complete the record with the audit line (same id); on failure say it waits in the local queue."""
        from manual_deploy.kube import error_line

        if started is not None:
            await asyncio.gather(started, return_exceptions=True)  # the complete record must land after it
        try:
            await asyncio.wait_for(asyncio.to_thread(self._write, line), FINISH_WAIT_S)
        except deploy_records.RecordsNotOurs as exc:
            self.out.warn(f"{line['app']}: the team's record not written: {exc.message}; it waits in this machine's audit log")
            return
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, too slow: the queue keeps it
            why = "no answer" if isinstance(exc, asyncio.TimeoutError) else error_line(exc)
            self.out.warn(f"{line['app']}: the team's record not written to {self.env} ({why}); it waits in this machine's "
                          f"audit log, and the next manual-deploy command that reaches {self.env} writes it")
            return
        record_queue.mark_pushed(line["id"])

    async def settle(self) -> None:
        """Wait for the queue push (bounded); what it could not push is said once."""
        if self._queue is None:
            return
        try:
            left = await asyncio.wait_for(asyncio.shield(self._queue), FINISH_WAIT_S)
        except Exception:  # noqa: BLE001 - the queue waits for the next command
            return
        for line in left:
            self.out.warn(line)
