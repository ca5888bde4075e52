"""One deploy per app and namespace at a time: a coordination.k8s.io/v1 Lease in the cluster, kept as a heartbeat.

The Lease lives where the deploy happens, so two engineers on two laptops see each other. It is
short (LEASE_DURATION_S) and renewed every RENEW_EVERY_S while the run lives, the way client-go's
leader election keeps its lock: a run that dies, however it dies, frees its app within the duration.
Every write is conditional: create is atomic (409 if it exists); a renewal or a take-over replaces
the object at the resourceVersion we last saw, so two writers can never both win (409 again), and a
run whose renewal meets someone else's lock knows it lost it and never fights.

The Lease names the run (user@host#pid and a run id) and carries its reason, command, phase, start
time and old → new image, so the next engineer can tell a busy deploy from a dead one.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from manual_deploy.errors import ManualDeployError, OperationFailed, Refused
from manual_deploy.processes import pid_alive
from manual_deploy.timestamps import parse_time

ANNOTATION_PREFIX = "manual-deploy.ebi-ait/"
LEASE_DURATION_S = 30  # a dead run's lock is free at most this long after its last renewal
RENEW_EVERY_S = 5.0  # well inside the duration: a renewal or two may fail in a blip without losing it
STALE_AFTER_S = 2 * RENEW_EVERY_S + 1  # two renewals missed: the holder is not answering
RETRY_FIRST_S, RETRY_MAX_S = 2.0, 8.0  # backoff while the cluster does not answer
REQUEST_TIMEOUT = (5, 10)  # (connect, read) s: a frozen API is a failed renewal, not a hung thread
_FIELDS = ("reason", "command", "phase", "started", "run-id", "image")


def lease_name(app: str) -> str:
    return f"manual-deploy-{app}"


def holder_identity() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def micro_now() -> datetime:
    """Now, with a non-zero microsecond: client 37 drops the fraction at .000000, which the apiserver rejects."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=1) if now.microsecond == 0 else now


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock, read from its Lease."""

    identity: str  # user@host#pid
    reason: str = ""
    acquired: datetime | None = None
    renewed: datetime | None = None
    duration_s: int | None = None
    run_id: str = ""
    command: str = ""
    phase: str = ""
    image: str = ""  # "old → new"
    started: datetime | None = None

    @property
    def expires(self) -> datetime | None:
        return self.renewed + timedelta(seconds=self.duration_s) if self.renewed and self.duration_s else None

    @property
    def user_host(self) -> str:
        return self.identity.split("#", 1)[0]

    @property
    def pid(self) -> int | None:
        tail = self.identity.rpartition("#")[2]
        return int(tail) if "#" in self.identity and tail.isdigit() else None

    def heartbeat_age(self, now: datetime | None = None) -> float | None:
        now = now or datetime.now(timezone.utc)
        return (now - self.renewed).total_seconds() if self.renewed else None

    def state(self, now: datetime | None = None) -> str:
        """live | stale (stopped renewing, not yet expired) | expired | dead (this user@host, its PID gone)."""
        now = now or datetime.now(timezone.utc)
        if self.user_host == holder_identity() and self.pid is not None and not pid_alive(self.pid):
            return "dead"
        if self.expires is not None and self.expires < now:
            return "expired"
        age = self.heartbeat_age(now)
        if age is not None and age > STALE_AFTER_S:
            return "stale"
        return "live"

    def describe(self, now: datetime | None = None) -> str:
        """`alice@laptop#41 (INC-7), apply in phase upgrade+verify for 2 min, heartbeat 3 s ago`."""
        now = now or datetime.now(timezone.utc)
        why = f" ({self.reason})" if self.reason else ""
        since = self.started or self.acquired
        activity = " ".join(part for part in (
            f"{self.command or 'deploy'} in phase {self.phase}" if self.phase else "",
            f"for {_ago((now - since).total_seconds())}" if since else "",
        ) if part)
        doing = ", ".join(part for part in (
            activity,
            f"heartbeat {_ago(self.heartbeat_age(now))} ago" if self.renewed and self.heartbeat_age(now) >= 0 else "",
        ) if part)
        return f"{self.identity}{why}" + (f", {doing}" if doing else "")

    def obituary(self, now: datetime | None = None) -> str:
        """One line on a run that died: whose, why, when it last answered and in which phase."""
        now = now or datetime.now(timezone.utc)
        why = f" ({self.reason})" if self.reason else ""
        when = f" {_ago(self.heartbeat_age(now))} ago" if self.renewed else ""
        phase = f" in phase {self.phase}" if self.phase else ""
        gone = "died" if self.state(now) == "dead" else "stopped answering"
        return f"{self.identity}'s {self.command or 'deploy'}{why} {gone}{when}{phase}"


def holder_of(lease) -> Holder:
    spec = lease.spec
    notes = {key: (lease.metadata.annotations or {}).get(ANNOTATION_PREFIX + key, "") for key in _FIELDS}
    acquired = spec.acquire_time if spec else None
    return Holder(
        identity=(spec.holder_identity if spec else None) or "?",
        reason=notes["reason"], acquired=acquired,
        renewed=(spec.renew_time or acquired) if spec else None,
        duration_s=spec.lease_duration_seconds if spec else None,
        run_id=notes["run-id"], command=notes["command"], phase=notes["phase"], image=notes["image"],
        started=parse_time(notes["started"]) if notes["started"] else None,
    )


def read_holder(api_client, namespace: str, app: str) -> Holder | None:
    """Who holds the app's deploy lock (live, stale, expired or dead); None when there is no lock."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(lease_name(app), namespace,
                                                                           _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise OperationFailed(f"cannot read lock {namespace}/{lease_name(app)}: HTTP {exc.status} {exc.reason}") from None
    return holder_of(lease)


def _raise_if_refused(exc, lock: str) -> None:
    """A 401/403 on the Lease: the one refusal wording, naming the lock and the permission it takes."""
    from manual_deploy.kube import is_refusal, refusal

    if is_refusal(exc):
        raise refusal(exc, message=f"cannot take the deploy lock {lock}",
                      hint="`manual-deploy doctor --env <env>` checks your credentials and every permission a "
                           "deploy needs (here: create leases.coordination.k8s.io)") from None


@dataclass
class Run:
    """What a lock says about the run holding it."""

    identity: str = field(default_factory=lambda: f"{holder_identity()}#{os.getpid()}")
    run_id: str = field(default_factory=lambda: os.urandom(6).hex())
    reason: str = ""
    command: str = "apply"
    started: datetime = field(default_factory=micro_now)


class DeployLock:
    """acquire() once, renew() every RENEW_EVERY_S, release() always (also on failure and signals)."""

    def __init__(self, api_client, namespace: str, app: str, *, run: Run | None = None, image: str = "",
                 duration_s: int = LEASE_DURATION_S, say: Callable[[str], None] | None = None):
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = lease_name(app)
        self.run = run or Run()
        self.image = image
        self.duration_s = duration_s
        self.say = say or (lambda line: None)
        self.phase = "lock"  # where the run is: the next renewal says so
        self.taken_from: Holder | None = None  # whose lock we took (dead, expired or broken), for the record
        self.lost_to: Holder | None = None  # who took ours
        self.taken_at: float | None = None  # time.monotonic() of the take-over
        self._version: str | None = None  # the resourceVersion of our last write
        self._acquired: datetime | None = None
        self._held = False
        self._mutex = threading.Lock()  # a renewal never runs while the lock is given back
        self._abandon = threading.Event()

    @property
    def identity(self) -> str:
        return self.run.identity

    def _body(self, resource_version: str | None = None):
        from kubernetes import client

        now = micro_now()
        notes = {"reason": self.run.reason[:500], "command": self.run.command, "phase": self.phase,
                 "started": self.run.started.isoformat(), "run-id": self.run.run_id, "image": self.image[:500]}
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=resource_version,
                annotations={ANNOTATION_PREFIX + key: value for key, value in notes.items()},
                labels={"app.kubernetes.io/managed-by": "manual-deploy"},
            ),
            spec=client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=self.duration_s,
                                    acquire_time=self._acquired or now, renew_time=now),
        )

    def _is_ours(self, holder: Holder) -> bool:
        return holder.identity == self.identity and holder.run_id == self.run.run_id

    # taking it -------------------------------------------------------------------------------------

    def acquire(self, *, break_lock: bool = False, confirm_break: Callable[[Holder], None] | None = None,
                deadline: float | None = None, abandon: threading.Event | None = None) -> None:
        """Take the lock: free, expired, or left by a dead run of this user@host → ours at once; a holder
        that stopped renewing → wait (bounded) for it to expire; a live holder → refuse, or with
        `break_lock` (after `confirm_break`) take it over. A network blip is retried with backoff until
        `deadline`. `abandon` set (the run is stopping) ends a wait and prevents any further write."""
        deadline = deadline or time.monotonic() + 10 * LEASE_DURATION_S
        self._abandon = abandon or threading.Event()
        delay = RETRY_FIRST_S
        while True:
            self._check_abandoned()
            try:
                if self._try_once(break_lock, confirm_break, deadline):
                    return
                delay = RETRY_FIRST_S
            except ManualDeployError:
                raise
            except Exception as exc:  # noqa: BLE001 - urllib3 or an ApiException 5xx: a blip before anything changed
                from manual_deploy.kube import is_transient, network_reason

                answered = bool(getattr(exc, "status", None))
                words = network_reason(exc) if answered else f"cluster unreachable ({network_reason(exc)})"
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise OperationFailed(f"cannot take the deploy lock {self.namespace}/{self.name}: {words}",
                                          hint="check the VPN and `manual-deploy doctor --env <env>`, then run it again") from None
                self.say(f"{self.name}: {words}, retrying in {delay:.0f} s")
                if self._abandon.wait(delay):
                    self._check_abandoned()
                delay = min(delay * 2, RETRY_MAX_S)

    def _try_once(self, break_lock: bool, confirm_break, deadline: float) -> bool:
        """One look at the lock: True once it is ours, False to look again; raises a refusal."""
        from kubernetes.client.exceptions import ApiException

        try:
            created = self.api.create_namespaced_lease(self.namespace, self._body(), _request_timeout=REQUEST_TIMEOUT)
            self._won(created)
            return True
        except ApiException as exc:
            _raise_if_refused(exc, f"{self.namespace}/{self.name}")
            if exc.status != 409:
                raise
        try:
            current = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return False  # released between our create and our read: try again
            _raise_if_refused(exc, f"{self.namespace}/{self.name}")
            raise
        holder = holder_of(current)
        if self._is_ours(holder):  # a create whose answer was lost in a blip did write
            self._won(current)
            return True
        state = holder.state()
        if state == "stale" and time.monotonic() < deadline:
            self._wait_for_expiry(holder, deadline)
            return False
        if state == "live" or state == "stale":
            if not break_lock:
                raise Refused(f"deploy lock {self.namespace}/{self.name} is held by {holder.describe()}",
                              hint="wait for that deploy to finish (`manual-deploy status --env <env>` shows that run); to take it over "
                                   "from a run you know is dead or hung, re-run with --break-lock",
                              details={"lock_holder": holder.identity})
            if confirm_break is not None:
                confirm_break(holder)
        self._take_over(current, holder)
        return True

    def _check_abandoned(self) -> None:
        if self._abandon.is_set():
            raise Refused(f"stopped before taking the deploy lock {self.namespace}/{self.name}")

    def _wait_for_expiry(self, holder: Holder, deadline: float) -> None:
        """The holder stopped renewing: its lock frees itself at expiry. Wait for that, saying so every ≤ 10 s."""
        left = (holder.expires - datetime.now(timezone.utc)).total_seconds() if holder.expires else LEASE_DURATION_S
        wait = max(0.5, min(left + 0.5, deadline - time.monotonic()))
        self.say(f"{self.name}: {holder.obituary()}; its lock expires in {max(0, int(left + 0.99))} s, waiting")
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if self._abandon.wait(min(9.0, end - time.monotonic())):
                self._check_abandoned()
            if time.monotonic() < end:
                self.say(f"{self.name}: still waiting for {holder.identity}'s lock to expire ({int(end - time.monotonic())} s)")

    def _take_over(self, current, holder: Holder) -> None:
        from kubernetes.client.exceptions import ApiException

        self._check_abandoned()
        self.taken_at = time.monotonic()
        self.taken_from = holder  # before the write: a plan reading the lock at the same moment sees why it is ours
        try:
            replaced = self.api.replace_namespaced_lease(self.name, self.namespace, self._body(current.metadata.resource_version),
                                                         _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            self.taken_from = None
            if exc.status == 409:
                raise Refused(f"someone else took deploy lock {self.namespace}/{self.name} at the same moment",
                              hint="check who is deploying (`manual-deploy status --env <env>`); re-run when they are done") from None
            raise OperationFailed(f"cannot take over lock {self.namespace}/{self.name}: HTTP {exc.status}") from None
        self._won(replaced)

    def _won(self, lease) -> None:
        self._version = lease.metadata.resource_version
        acquired = lease.spec.acquire_time if lease.spec else None
        # a MicroTime must keep its 6 digits; client 37 drops a .000000 fraction (see micro_now)
        self._acquired = acquired.replace(microsecond=1) if acquired is not None and acquired.microsecond == 0 else acquired
        self._held = True

    # keeping it ------------------------------------------------------------------------------------

    def renew(self) -> str:
        """One heartbeat: 'ok', 'lost' (someone else holds it now: see `lost_to`) or 'unreachable: <why>'.

        A conditional replace at our last resourceVersion. A 409 is looked into: still ours (an answer
        we never got did write) → renewed at the new version; anyone else's → lost, never fought for."""
        with self._mutex:
            return self._renew() if self._held else "ok"

    def _renew(self) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.replace_namespaced_lease(self.name, self.namespace, self._body(self._version),
                                                      _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status not in (404, 409):
                return f"unreachable: HTTP {exc.status} {exc.reason}"
            try:
                return self._after_conflict() if exc.status == 409 else self._recreate()
            except Exception as again:  # noqa: BLE001 - the look into the conflict can meet the blip too
                from manual_deploy.kube import network_reason

                return f"unreachable: {network_reason(again)}"
        except Exception as exc:  # noqa: BLE001 - urllib3: timeouts, resets, TLS; a blip, not a verdict
            from manual_deploy.kube import network_reason

            return f"unreachable: {network_reason(exc)}"
        self._version = lease.metadata.resource_version
        return "ok"

    def _after_conflict(self) -> str:
        current = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        holder = holder_of(current)
        if self._is_ours(holder):
            self._version = current.metadata.resource_version
            return self._renew()
        self.lost_to, self._held = holder, False
        return "lost"

    def _recreate(self) -> str:
        """Deleted by hand under us: ours again if nobody else took it meanwhile."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._won(self.api.create_namespaced_lease(self.namespace, self._body(), _request_timeout=REQUEST_TIMEOUT))
            return "ok"
        except ApiException as exc:
            if exc.status == 409:
                return self._after_conflict()
            return f"unreachable: HTTP {exc.status} {exc.reason}"

    # giving it back --------------------------------------------------------------------------------

    def release(self) -> None:
        """Delete the Lease if it is still ours; never raises (a lock left behind expires on its own)."""
        with self._mutex:
            if self._held:
                self._give_back()

    def _give_back(self) -> None:
        from kubernetes import client

        try:
            current = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
            if self._is_ours(holder_of(current)):
                self.api.delete_namespaced_lease(
                    self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT,
                    body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=current.metadata.resource_version)),
                )
        except Exception:  # noqa: BLE001 - ApiException or the network: it expires within LEASE_DURATION_S anyway
            pass
        finally:
            self._held = False

    def __enter__(self) -> "DeployLock":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
