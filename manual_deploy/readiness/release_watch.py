"""Watch every resource of a helm release while helm waits, and say why each is not ready.

helm's --wait only says "timed out"; a Deployment's counts alone miss a claim that never binds.
This reads the resources helm stored for the revision it is applying, looks at each with its
kind's rule (one GET each; Events and pods only for what is not ready), and turns a failing state
that lasts `grace_s` into a Failure with its evidence (events, and for pods the container's logs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from manual_deploy.readiness import daemonset, deployment, job, manifest, pod, pvc, reads, service, statefulset
from manual_deploy.readiness.api import Api, ReadError
from manual_deploy.readiness.resource_state import Failure, ResourceState, name_of
from manual_deploy.images import same_image

WAITED_EVENTS = 3  # per resource, when helm gave up first: enough to say why, short enough to read
ROOT_CAUSE_ORDER = {"Pod": 1, "Deployment": 2, "StatefulSet": 2, "DaemonSet": 2}  # every other kind: 0, the most basic
WORKLOADS = {"StatefulSet": statefulset.assess, "DaemonSet": daemonset.assess, "Job": job.assess}


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
        self._mounted: set[str] = set()
        self._first_seen: dict[tuple[str, str, str], float] = {}
        self._deployment_pods: dict[str, list[dict[str, Any]]] = {}  # as of the last check

    # --- looking ---------------------------------------------------------------------------------------

    def check(self) -> Look:
        if self.release is None:
            self._find_release()
        if self.release is None:
            self.last = Look(None, ())
            return self.last
        states, pods = [], []
        self._deployment_pods = {}
        unreachable: ReadError | None = None
        for res in self.release.resources:
            if res.hook and res.kind != "Job":
                continue
            if unreachable is not None:  # no answer at all: asking again per resource only multiplies the timeout
                states.append(ResourceState(res.kind, res.name, False, f"cannot read ({unreachable})"))
                continue
            try:
                found, new_pods = self._look(res)
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
                self._mounted = pvc.claims_mounted([r.body for r in self.release.resources])
            self._release_error = None
        except ReadError as exc:
            self._release_error = f"cannot read helm's release Secrets ({exc})"
        except (ValueError, KeyError, OSError) as exc:  # a corrupt release: helm would not apply it either
            self._release_error = f"cannot decode helm's release Secret ({type(exc).__name__})"

    def _look(self, res: manifest.Resource) -> tuple[ResourceState, list[ResourceState]]:
        if res.kind not in reads.PATHS:
            return ResourceState(res.kind, res.name, True, "created by helm"), []
        obj = self.api.get(reads.path(res.kind, res.namespace, res.name))
        if obj is None:
            if res.hook:  # not run yet, or run and deleted by its hook-delete-policy: helm waits for hooks itself
                return ResourceState(res.kind, res.name, True, "hook not running"), []
            return ResourceState(res.kind, res.name, False, "not created yet"), []
        if res.kind == "Deployment":
            live = self._deployment_pods.setdefault(res.name, reads.deployment_pods(self.api, obj, res.namespace))
            pods = [self._pod(p) for p in live]
            return self._assess(res, obj, lambda events: deployment.assess(obj, events, pods)), pods
        if res.kind in WORKLOADS:
            live = reads.owned_pods(self.api, obj, res.namespace)
            if res.kind == "StatefulSet":
                live = [p for p in live if statefulset.is_new_pod(obj, p)]
            pods = [self._pod(p) for p in live]
            return self._assess(res, obj, lambda events: WORKLOADS[res.kind](obj, events, pods)), pods
        if res.kind == "PersistentVolumeClaim":
            return self._assess(res, obj, lambda events: pvc.assess(obj, events, mounted=res.name in self._mounted)), []
        if res.kind == "Service":
            return self._assess(res, obj, lambda events: service.assess(obj, events)), []
        if res.kind == "Pod":
            return self._pod(obj), []
        return ResourceState(res.kind, res.name, True, "exists"), []

    def _assess(self, res: manifest.Resource, obj: dict[str, Any], rule) -> ResourceState:
        """The rule without events first: Events are read only for what is not ready."""
        first = rule([])
        return first if first.ready else rule(self._events(res.kind, res.name, res.namespace))

    def _pod(self, obj: dict[str, Any]) -> ResourceState:
        first = pod.assess(obj, [])
        if first.ready:
            return first
        return pod.assess(obj, self._events("Pod", name_of(obj), obj["metadata"].get("namespace") or self.namespace))

    def _events(self, kind: str, name: str, namespace: str) -> list[dict[str, Any]]:
        return reads.events(self.api, kind, name, namespace)

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
        root = min(failing, key=lambda s: (ROOT_CAUSE_ORDER.get(s.kind, 0), first_seen[(s.kind, s.name, s.failing)]))
        return self._diagnose(root)

    def _diagnose(self, found: ResourceState) -> Failure:
        failure = Failure(found.kind, found.name, found.failing or "", found.message or found.summary, list(found.events),
                          found.container, summary=found.summary)
        if found.kind == "Pod" and found.container:
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
            pods = self._deployment_pods.get(name)
            if pods is None:
                wrong.append(f"deployment {name} is missing")
                continue
            for live in pods:
                wrong.extend(f"{name_of(live)} runs {c.get('image')}" for c in (live.get("spec") or {}).get("containers") or []
                             if not same_image(c.get("image") or "", expected))
        return wrong
