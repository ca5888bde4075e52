"""Watch every resource of a helm release while helm waits, and say why each is not ready.

helm's --wait only says "timed out"; a Deployment's counts alone miss a claim that never binds.
This reads the resources helm stored for the revision it is applying, looks at each with its
kind's rule (one GET each; Events and pods only for what is not ready), and turns a failing state
that lasts `grace_s` into a Failure with its evidence (events, and for pods the container's logs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from manual_deploy.readiness import kinds, manifest, reads
from manual_deploy.readiness.api import Api, ReadError
from manual_deploy.readiness.kinds import Read
from manual_deploy.readiness.resource_state import Failure, ResourceState, name_of
from manual_deploy.images import same_image

WAITED_EVENTS = 3  # per resource, when helm gave up first: enough to say why, short enough to read


@dataclass(frozen=True)
class Look:
    """One look at the release. `states`: its resources in manifest order; `pods`: its workloads' new pods."""

    revision: int | None
    states: tuple[ResourceState, ...]
    pods: tuple[ResourceState, ...] = ()
    failure: Failure | None = None

    @property
    def all_ready(self) -> bool:
        return self.revision is not None and all(s.ready for s in self.states)


class ReleaseWatch:
    """Polled while helm waits (`check()` about once a second); never raises for what it cannot read."""

    def __init__(self, api_client, namespace: str, release: str, *, after_revision: int | None = None,
                 grace_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = Api(api_client)
        self.namespace, self.release_name = namespace, release
        self.after_revision = after_revision
        self.grace_s, self.clock = grace_s, clock
        self.release: manifest.Release | None = None
        self.last: Look | None = None
        self._release_error: str | None = None
        self._first_seen: dict[tuple[str, str, str], float] = {}
        self._pods: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (kind, name) → its new pods, as of the last check

    # --- looking ---------------------------------------------------------------------------------------

    def check(self) -> Look:
        if self.release is None:
            self._find_release()
        if self.release is None:
            self.last = Look(None, ())
            return self.last
        states, pods = [], []
        self._pods = {}
        unreachable: ReadError | None = None
        for res in self.release.resources:
            kind = kinds.get(res.kind)
            if res.hook and not (kind and kind.watch_hooks):
                continue
            if unreachable is not None:  # no answer at all: asking again per resource only multiplies the timeout
                states.append(ResourceState(res.kind, res.name, False, f"cannot read ({unreachable})"))
                continue
            try:
                found, new_pods = self._look(res, kind)
            except ReadError as exc:
                unreachable = exc if exc.unreachable else None
                found, new_pods = ResourceState(res.kind, res.name, False, f"cannot read ({exc})"), []
            states.append(found)
            pods.extend(new_pods)
        self.last = Look(self.release.revision, tuple(states), tuple(pods), self._track([*pods, *states]))
        return self.last

    def _find_release(self) -> None:
        try:
            secrets = self.api.items(manifest.secrets_path(self.namespace), labels=manifest.selector(self.release_name))
            secret = manifest.newest(secrets, self.after_revision)
            if secret is not None:
                self.release = manifest.decode(secret, self.namespace)
            self._release_error = None
        except ReadError as exc:
            self._release_error = f"cannot read helm's release Secrets ({exc})"
        except (ValueError, KeyError, OSError) as exc:  # a corrupt release: helm would not apply it either
            self._release_error = f"cannot decode helm's release Secret ({type(exc).__name__})"

    def _look(self, res: manifest.Resource, kind: kinds.Kind | None) -> tuple[ResourceState, list[ResourceState]]:
        if kind is None:
            return ResourceState(res.kind, res.name, True, "created by helm"), []
        obj = self.api.get(kind.path(res.namespace, res.name))
        if obj is None:
            if res.hook:  # not run yet, or run and deleted by its hook-delete-policy: helm waits for hooks itself
                return ResourceState(res.kind, res.name, True, "hook not running"), []
            return ResourceState(res.kind, res.name, False, "not created yet"), []
        if kind.assess is None:
            return ResourceState(res.kind, res.name, True, "exists"), []
        return self._judge(kind, obj, res.namespace)

    def _judge(self, kind: kinds.Kind, obj: dict[str, Any], namespace: str) -> tuple[ResourceState, list[ResourceState]]:
        """The kind's rule on what it reads; its Events only when the rule without them says not ready."""
        pods = [self._judge(kinds.get("Pod"), p, namespace)[0] for p in self._new_pods(kind, obj, namespace)]
        related = kinds.Related(
            pods=tuple(pods), jobs=tuple(reads.owned_jobs(self.api, obj, namespace)) if Read.JOBS in kind.reads else (),
            release=tuple(r.body for r in self.release.resources) if self.release else None,
            since=self.release.written if self.release else None)
        first = kind.assess(obj, related)
        if first.ready or Read.EVENTS not in kind.reads:
            return first, pods
        events = reads.events(self.api, kind.name, name_of(obj), (obj.get("metadata") or {}).get("namespace") or namespace)
        return kind.assess(obj, replace(related, events=tuple(events))), pods

    def _new_pods(self, kind: kinds.Kind, obj: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        """The workload's new pods (kept for pods_not_running); none for kinds that read no pods."""
        if Read.PODS not in kind.reads or kind.pods is None:
            return []
        live = self._pods[(kind.name, name_of(obj))] = kind.pods(self.api, obj, namespace)
        return live

    # --- failing for too long ----------------------------------------------------------------------------

    def _track(self, states: list[ResourceState]) -> Failure | None:
        """Once some failing state has lasted grace_s (per kind, name and reason), the release fails.

        The failure named is the most basic one failing now, not the first to run out its grace: a
        claim that cannot be provisioned, before the pod that waits for it (FailedScheduling: unbound
        PersistentVolumeClaims), before the Deployment that then misses its progress deadline.
        """
        now = self.clock()
        failing = [s for s in states if s.failing]
        first_seen = {(s.kind, s.name, s.failing): self._first_seen.get((s.kind, s.name, s.failing), now) for s in failing}
        self._first_seen = first_seen
        if not any(now - first >= self.grace_s for first in first_seen.values()):
            return None
        return self._diagnose(self._root(failing))

    def _root(self, failing: list[ResourceState]) -> ResourceState:
        """The most basic failing state (by its kind's rank), the longest failing among equals."""
        return min(failing, key=lambda s: (_rank(s.kind), self._first_seen.get((s.kind, s.name, s.failing), 0.0)))

    def failing_now(self) -> Failure | None:
        """The root cause among the states failing at the last look, grace or not: once helm has said ready
        there is nothing left to wait for."""
        found = [s for s in (*self.last.pods, *self.last.states) if s.failing] if self.last else []
        return self._diagnose(self._root(found)) if found else None

    def settling(self) -> list[ResourceState]:
        """What was not ready at the last look without failing, of kinds that may settle after a deploy
        (an Ingress's address): a warning then, not a failure."""
        states = self.last.states if self.last else ()
        return [s for s in states if not s.ready and not s.failing and _settles(s.kind)]

    def _diagnose(self, found: ResourceState) -> Failure:
        failure = Failure(found.kind, found.name, found.failing or "", found.message or found.summary, list(found.events),
                          found.container, summary=found.summary, owned=found.owned)
        if found.container:  # a pod's: its logs are the evidence
            failure.logs = reads.log_tail(self.api, self.namespace, found.name, found.container)
        return failure

    # --- saying it -----------------------------------------------------------------------------------------

    def _awaited(self) -> str:
        revision = self.after_revision + 1 if self.after_revision is not None else 1
        text = f"waiting for helm to write revision {revision}"
        return f"{text} ({self._release_error})" if self._release_error else text

    def progress(self) -> str:
        """One line: each resource not yet ready and why."""
        if self.last is None or self.release is None:
            return self._awaited()
        waiting = [f"{s.label}: {s.summary}" for s in self.last.states if not s.ready]
        if not waiting:
            return f"all {len(self.last.states)} resources of {self.release_name} revision {self.release.revision} ready"
        return "waiting for " + "; ".join(waiting)

    def unreadable(self) -> str | None:
        """Why the last look could read nothing of the release (no answer, or helm's record unreadable); else None."""
        if self._release_error:
            return self._release_error
        states = self.last.states if self.last else ()
        if states and all(s.summary.startswith("cannot read") for s in states):
            return states[0].summary
        return None

    def waited_for(self) -> str | None:
        """What was not ready at the last look, with its last events: said when helm's timeout ends first."""
        if self.last is None:
            return None
        if self.release is None:
            return self._awaited()
        lines = []
        for found in [*self.last.states, *self.last.pods]:
            if found.ready:
                continue
            lines.append(f"{found.label}: {found.summary}")
            warnings = [event for event in found.events if event.startswith("Warning ")]  # the why, before the story
            lines.extend(f"    {event}" for event in (warnings or list(found.events))[-WAITED_EVENTS:])
        return "\n".join(lines) or f"every resource of {self.release_name} revision {self.release.revision} was ready at the last look"

    def pods_not_running(self, expected: str) -> list[str]:
        """New pods of the release's Deployments NOT running `expected`, as of the last check (empty: all good)."""
        names = [r.name for r in (self.release.resources if self.release else ()) if r.kind == "Deployment" and not r.hook]
        if not names:
            return [f"deployment {self.release_name} is missing"]
        wrong = []
        for name in names:
            pods = self._pods.get(("Deployment", name))
            if pods is None:
                wrong.append(f"deployment {name} is missing")
                continue
            for live in pods:
                wrong.extend(f"{name_of(live)} runs {c.get('image')}" for c in (live.get("spec") or {}).get("containers") or []
                             if not same_image(c.get("image") or "", expected))
        return wrong


def _rank(kind: str) -> int:
    found = kinds.get(kind)
    return found.rank if found else 0


def _settles(kind: str) -> bool:
    found = kinds.get(kind)
    return found is not None and found.settles_after
