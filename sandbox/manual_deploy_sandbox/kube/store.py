"""Object storage with the apiserver's bookkeeping: one resourceVersion counter and a change log.

Every version of every object is also written to kmock's ObjectsArray, so tests can assert on an
object's history the kmock way. What kmock lacks is the cluster-wide, monotonically increasing
resourceVersion and a log of changes that a watch can resume from: clients list, then watch "from
the list's resourceVersion", and expect every change after that point even if it happened before
the watch connected. A per-resource index keeps lists cheap for the controller's frequent passes.

Everything here runs on the emulator's event loop thread; mutations are synchronous, so no locks.
Stored dicts are never mutated in place (writes replace them), so `copy=False` reads are safe for
code that only reads.
"""

from __future__ import annotations

import asyncio
import bisect
import copy as copying
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kmock

from manual_deploy_sandbox.kube.resources import ResourceType

HISTORY_LIMIT = 20  # object versions kmock keeps per object; pods are rewritten as they progress
LOG_LIMIT = 20_000  # changes a watch can resume from; older resourceVersions get 410 Gone


@dataclass(frozen=True)
class Change:
    """One write, as a watch sees it: ADDED / MODIFIED / DELETED with the object before and after."""

    rv: int
    resource: ResourceType
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Store:
    """The objects of every served resource, keyed (resource, namespace, name)."""

    def __init__(self, objects: kmock.ObjectsArray) -> None:
        self.objects = objects
        self._live: dict[ResourceType, dict[tuple[str | None, str], dict[str, Any]]] = {}
        self._rv = 0
        self._log: list[Change] = []
        self._changed = asyncio.Event()

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion handed out, as lists report it."""
        return str(self._rv)

    @property
    def oldest_resumable(self) -> int:
        """The oldest resourceVersion a watch may resume from without missing changes."""
        return self._log[0].rv - 1 if self._log else self._rv

    @property
    def changed(self) -> asyncio.Event:
        """An event set at the next write; take it *before* reading the log to never miss one."""
        return self._changed

    def get(self, res: ResourceType, namespace: str | None, name: str, *, copy: bool = True) -> dict[str, Any] | None:
        """The object, or None; a private copy unless the caller promises not to mutate it."""
        found = self._live.get(res, {}).get((namespace if res.namespaced else None, name))
        return copying.deepcopy(found) if copy and found is not None else found

    def list(self, res: ResourceType, namespace: str | None = None,
             predicate: Callable[[dict[str, Any]], bool] | None = None, *, copy: bool = True) -> list[dict[str, Any]]:
        """Live objects in one namespace (or all), sorted by namespace and name like the apiserver's lists."""
        ordered = sorted(self._live.get(res, {}).items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
        found = [obj for (ns, _), obj in ordered
                 if (namespace is None or ns == namespace) and (predicate is None or predicate(obj))]
        return copying.deepcopy(found) if copy else found

    def put(self, res: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new or changed object under a fresh resourceVersion; returns a private copy."""
        meta = obj["metadata"]
        key = (meta.get("namespace") if res.namespaced else None, meta["name"])
        old = self._live.get(res, {}).get(key)
        stored = copying.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = self._next_rv()
        self._live.setdefault(res, {})[key] = stored
        self._remember(res, key, stored)
        self._record(res, "MODIFIED" if old is not None else "ADDED", stored, old)
        return copying.deepcopy(stored)

    def remove(self, res: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        """Delete the object (kmock keeps its history); returns its last state, None if absent."""
        key = (namespace if res.namespaced else None, name)
        old = self._live.get(res, {}).pop(key, None)
        if old is None:
            return None
        last = copying.deepcopy(old)
        last["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[res.key, key[0], name].delete()
        self._record(res, "DELETED", last, old)
        return copying.deepcopy(last)

    def changes_since(self, rv: int, res: ResourceType) -> Iterator[Change]:
        """Changes to `res` with a resourceVersion above `rv`, oldest first."""
        start = bisect.bisect_right(self._log, rv, key=lambda change: change.rv)
        return (change for change in self._log[start:] if change.resource is res)

    def wake(self) -> None:
        """Wake every waiting watch without a change (used when the server is stopping)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _remember(self, res: ResourceType, key: tuple[str | None, str], stored: dict[str, Any]) -> None:
        """Append the version to kmock's per-object history (bounded, for long-running sandboxes)."""
        array_key = (res.key, key[0], key[1])
        if array_key in self.objects:
            history = self.objects[array_key].history
            history.append(stored)
            if len(history) > HISTORY_LIMIT:
                del history[:-HISTORY_LIMIT]
        else:
            self.objects[array_key] = stored

    def _record(self, res: ResourceType, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self._log.append(Change(int(obj["metadata"]["resourceVersion"]), res, kind, obj, old))
        if len(self._log) > LOG_LIMIT + LOG_LIMIT // 4:  # trim in batches, not on every write
            del self._log[: len(self._log) - LOG_LIMIT]
        self.wake()
