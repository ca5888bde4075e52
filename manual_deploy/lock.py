"""One deploy per app and namespace at a time: a coordination.k8s.io/v1 Lease in the cluster.

The Lease lives where the deploy happens, so two engineers on two laptops see each other. Create
is atomic (409 if it exists); taking over an expired or broken lock replaces it at the
resourceVersion we read, so two takers cannot both win (409 again).
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from manual_deploy.errors import OperationFailed, Refused

ANNOTATION_PREFIX = "manual-deploy.ebi-ait/"


def lease_name(app: str) -> str:
    return f"manual-deploy-{app}"


def holder_identity() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def micro_now() -> datetime:
    """Now, with a non-zero microsecond: client 37 drops the fraction at .000000, which the apiserver rejects."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=1) if now.microsecond == 0 else now


@dataclass(frozen=True)
class Holder:
    identity: str
    reason: str
    acquired: datetime | None
    expires: datetime | None

    def describe(self, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        age = f", for {int((now - self.acquired).total_seconds())} s" if self.acquired else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.identity}{why}{age}"


def _holder(lease) -> Holder:
    spec = lease.spec
    annotations = lease.metadata.annotations or {}
    acquired = spec.acquire_time if spec else None
    renew = (spec.renew_time or acquired) if spec else None
    duration = spec.lease_duration_seconds if spec else None
    expires = renew + timedelta(seconds=duration) if renew and duration else None
    return Holder(
        identity=(spec.holder_identity if spec else None) or "?",
        reason=annotations.get(ANNOTATION_PREFIX + "reason", ""),
        acquired=acquired,
        expires=expires,
    )


def live_holder(api_client, namespace: str, app: str, *, ignore: "DeployLock | None" = None) -> Holder | None:
    """Who holds the app's deploy lock right now (not expired), other than `ignore`; None if nobody.

    Tells a busy release (someone's deploy is running) from a stuck one (a deploy died mid-way).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(lease_name(app), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise OperationFailed(f"cannot read lock {namespace}/{lease_name(app)}: HTTP {exc.status} {exc.reason}") from None
    holder = _holder(lease)
    if ignore is not None and holder.identity == ignore.identity:
        return None
    expired = holder.expires is not None and holder.expires < datetime.now(timezone.utc)
    return None if expired else holder


class DeployLock:
    """Acquire with `acquire()`, always `release()` (also on failure and Ctrl-C)."""

    def __init__(self, api_client, namespace: str, app: str, *, reason: str = "", duration_s: int = 900, identity: str | None = None):
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = lease_name(app)
        self.reason = reason
        self.duration_s = duration_s
        self.identity = identity or f"{holder_identity()}#{os.getpid()}"
        self.broken: Holder | None = None  # whom we took it from, for the audit record
        self._held = False

    def _body(self, resource_version: str | None = None):
        from kubernetes import client

        now = micro_now()
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                resource_version=resource_version,
                annotations={ANNOTATION_PREFIX + "reason": self.reason[:500]},
                labels={"app.kubernetes.io/managed-by": "manual-deploy"},
            ),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.duration_s,
                acquire_time=now,
                renew_time=now,
            ),
        )

    def acquire(self, *, break_lock: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_lease(self.namespace, self._body())
            self._held = True
            return
        except ApiException as exc:
            if exc.status in (401, 403):
                from manual_deploy.kube import api_message

                raise Refused(f"cannot take the deploy lock {self.namespace}/{self.name}: {api_message(exc)} (HTTP {exc.status})",
                              hint="`manual-deploy doctor --env <env>` checks your credentials and every permission a "
                                   "deploy needs (here: create leases.coordination.k8s.io)") from None
            if exc.status != 409:
                raise OperationFailed(f"cannot create lock {self.namespace}/{self.name}: HTTP {exc.status} {exc.reason}") from None
        current = self.api.read_namespaced_lease(self.name, self.namespace)
        holder = _holder(current)
        now = datetime.now(timezone.utc)
        expired = holder.expires is not None and holder.expires < now
        if not (break_lock or expired):
            raise Refused(
                f"deploy lock {self.namespace}/{self.name} is held by {holder.describe(now)}",
                hint="wait for that deploy to finish; if it is dead, re-run with --break-lock",
                details={"lock_holder": holder.identity},
            )
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, self._body(current.metadata.resource_version))
        except ApiException as exc:
            if exc.status == 409:
                raise Refused(
                    f"someone else took deploy lock {self.namespace}/{self.name} at the same moment",
                    hint="check who is deploying; re-run when they are done",
                ) from None
            raise OperationFailed(f"cannot take over lock {self.namespace}/{self.name}: HTTP {exc.status}") from None
        self.broken = holder
        self._held = True

    def release(self) -> None:
        """Delete the Lease if it is still ours; never raises (a stale lock expires on its own)."""
        if not self._held:
            return
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            current = self.api.read_namespaced_lease(self.name, self.namespace)
            if current.spec and current.spec.holder_identity == self.identity:
                self.api.delete_namespaced_lease(
                    self.name,
                    self.namespace,
                    body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=current.metadata.resource_version)),
                )
        except ApiException:
            pass
        finally:
            self._held = False

    def __enter__(self) -> "DeployLock":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
