"""The resource kinds the watch understands: one module per kind, each exposing `KIND = Kind(...)`.

A kind owns everything about itself (krane's model): its API path, the RBAC it needs, its
root-cause rank, what else a look at it reads, its rule (`assess`) and the remedies for the reasons
that rule names. The watch, the reads, the advice and doctor's permission list are derived from
here, so a new kind is one new module in this package.
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple

from manual_deploy.readiness.resource_state import ResourceState

if TYPE_CHECKING:
    from manual_deploy.readiness.api import Api


class Read(enum.Flag):
    """What a look at a kind reads besides the object itself."""

    NONE = 0
    EVENTS = enum.auto()  # its Events, only while it is not ready (ready ones need no story)
    PODS = enum.auto()  # its new pods (Kind.pods says which), each judged by the Pod rule
    JOBS = enum.auto()  # the Jobs it owns


@dataclass(frozen=True)
class Related:
    """What the watch read for a rule besides the object: the same shape for every kind."""

    events: tuple[dict[str, Any], ...] = ()
    pods: tuple[ResourceState, ...] = ()  # the new pods, already judged
    jobs: tuple[dict[str, Any], ...] = ()  # Jobs the object owns
    release: tuple[dict[str, Any], ...] | None = None  # every resource of the release (None: not known)
    since: dt.datetime | None = None  # when helm wrote the revision being watched
    now: dt.datetime | None = None  # for rules about how long something has lasted (None: the clock)


class Access(NamedTuple):
    """One RBAC need in the release's namespace: (resource, API group, verbs, what for)."""

    resource: str
    group: str
    verbs: tuple[str, ...]
    why: str


Rule = Callable[[dict[str, Any], Related], ResourceState]


@dataclass(frozen=True)
class Kind:
    """One resource kind. `assess` None: no rule, ready once it exists."""

    name: str
    api: str  # "/apis/apps/v1", "/api/v1"
    plural: str
    assess: Rule | None = None
    reads: Read = Read.NONE
    pods: Callable[["Api", dict[str, Any], str], list[dict[str, Any]]] | None = None  # its new pods (Read.PODS)
    rank: int = 0  # root cause first: 0 (claims, Services…) before 1 (pods) before 2 (their workloads)
    verbs: tuple[str, ...] = ()
    why: str = ""
    more_access: tuple[Access, ...] = ()  # subresources (pods/log)
    remedies: Mapping[str, str] = field(default_factory=dict)  # reason → next step ({namespace}, {name}, {owned})
    image_faults: frozenset[str] = frozenset()  # reasons only a new image fixes (no remedy in the cluster)
    watch_hooks: bool = False  # a helm hook of this kind is watched too (helm waits for hook Jobs itself)
    settles_after: bool = False  # may still be settling when the deploy ends: a warning then, not a failure

    @property
    def group(self) -> str:
        """The API group RBAC names ("" for the core group)."""
        parts = self.api.strip("/").split("/")
        return parts[1] if parts[0] == "apis" else ""

    def path(self, namespace: str, name: str | None = None) -> str:
        return f"{self.api}/namespaces/{namespace}/{self.plural}" + (f"/{name}" if name else "")

    def access(self) -> tuple[Access, ...]:
        own = (Access(self.plural, self.group, self.verbs, self.why),) if self.verbs else ()
        return own + self.more_access

    def remedy(self, reason: str, namespace: str, name: str, owned: str = "") -> str | None:
        """The fix for a reason this kind names; None when only a new image fixes it."""
        if reason in self.image_faults:
            return None
        text = self.remedies.get(reason, f"fix the {self.name}'s {reason} (its events above say why)")
        return text.format(namespace=namespace, name=name, owned=owned or name)


@cache
def registry() -> dict[str, Kind]:
    """Every kind of this package, by kind name (each module's KIND)."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        kind = importlib.import_module(f"{__name__}.{module.name}").KIND
        found[kind.name] = kind
    return found


def get(name: str) -> Kind | None:
    return registry().get(name)


def access() -> list[Access]:
    """What the watch and helm need of every kind, for doctor to check before a deploy needs it."""
    return [need for kind in registry().values() for need in kind.access()]
