"""Build triggers for the quay stand-in: list them and start one for a ref, as quay's API does.

quay guards both with repo:admin (anonymous: 401 invalid_token; a token without the scope: 403
insufficient_scope), answers 404 for an unknown trigger, 400 "Trigger is not enabled." for a
disabled one and 400 for a body its schema rejects. A start queues a build through the stand-in's
own `add_build`, so it plays its phases and pushes the real image like any other build.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from manual_deploy_sandbox.quay_errors import INSUFFICIENT_SCOPE, NOT_FOUND, UNAUTHORIZED, api_error

SCM_SERVICES = ("github", "gitlab", "bitbucket")
SERVICES = (*SCM_SERVICES, "custom-git")
DISABLED_REASONS = ("user_toggled", "successive_build_failures", "successive_build_internal_errors")
RUN_PARAMETERS = ("branch_name", "commit_sha", "refs")  # quay's RunParameters schema, no others allowed


@dataclass
class _Trigger:
    id: str
    app: str
    service: str
    enabled: bool
    disabled_reason: str | None
    phases: list[tuple[str, float]] | None  # the builds it starts (None: the stand-in's default)

    def view(self) -> dict[str, Any]:
        """One trigger as quay's trigger_view renders it for a repository admin."""
        scm = self.service in SCM_SERVICES
        return {
            "id": self.id, "service": self.service, "is_active": True, "enabled": self.enabled,
            "disabled_reason": self.disabled_reason, "can_invoke": True, "build_source": None,
            "repository_url": None,
            "config": {"build_source": f"ebi-ait/{self.app}", "dockerfile_path": "/Dockerfile", "context": "/",
                       **({"branchtag_regex": "^refs/tags/.+$"} if scm else {})},
        }


class QuayTriggers:
    """The triggers of the stand-in's repositories and the two routes that reach them."""

    def __init__(self, add_build: Callable[..., str], build_view: Callable[[str], dict[str, Any]]) -> None:
        self._add_build = add_build
        self._build_view = build_view
        self._lock = threading.Lock()
        self._triggers: dict[str, _Trigger] = {}
        self._synthetic: dict[str, str] = {}  # apps without a trigger: a stable id for their builds' `trigger`

    def add(self, app: str, *, service: str = "github", enabled: bool = True, disabled_reason: str | None = None,
            phases: list[tuple[str, float]] | None = None) -> str:
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}, not {service!r}")
        trigger = _Trigger(str(uuid.uuid4()), app, service, enabled, None if enabled else (disabled_reason or "user_toggled"), phases)
        with self._lock:
            self._triggers[trigger.id] = trigger
        return trigger.id

    def disable(self, app: str, reason: str = "user_toggled") -> None:
        """Disable every trigger of `app`, as quay does by hand or after successive failures."""
        if reason not in DISABLED_REASONS:
            raise ValueError(f"reason must be one of {DISABLED_REASONS}, not {reason!r}")
        with self._lock:
            for trigger in self._triggers.values():
                if trigger.app == app:
                    trigger.enabled, trigger.disabled_reason = False, reason

    def of(self, app: str) -> list[_Trigger]:
        with self._lock:
            return [t for t in self._triggers.values() if t.app == app]

    def for_build(self, app: str) -> dict[str, Any]:
        """The `trigger` field of a build of `app`: its real trigger when it has one."""
        triggers = self.of(app)
        if triggers:
            return {**triggers[0].view(), "can_invoke": False}
        with self._lock:
            trigger_id = self._synthetic.setdefault(app, str(uuid.uuid4()))
        return {**_Trigger(trigger_id, app, "github", True, None, None).view(), "can_invoke": False, "config": {}}

    # ------------------------------------------------------------------ routes

    @staticmethod
    def is_start(rest: list[str]) -> bool:
        return len(rest) == 2 and rest[1] == "start"

    def route(self, method: str, repo: str, rest: list[str], scope: str | None, body: bytes) -> tuple[int, Any]:
        """`GET …/trigger/` and `POST …/trigger/<uuid>/start`; `scope`: "admin", "read" or None."""
        if scope is None:
            return 401, UNAUTHORIZED
        if scope != "admin":
            return 403, INSUFFICIENT_SCOPE
        if not rest and method in ("GET", "HEAD"):
            return 200, {"triggers": [t.view() for t in self.of(repo)]}
        if self.is_start(rest) and method == "POST":
            return self._start(repo, rest[0], body)
        return 404, NOT_FOUND

    def _start(self, repo: str, trigger_id: str, body: bytes) -> tuple[int, Any]:
        trigger = next((t for t in self.of(repo) if t.id == trigger_id), None)
        if trigger is None:
            return 404, NOT_FOUND
        try:
            parameters = _run_parameters(body)
        except ValueError as exc:
            return 400, api_error(400, "invalid_request", str(exc))
        if not trigger.enabled:
            return 400, api_error(400, "invalid_request", "Trigger is not enabled.")
        try:
            tag, commit = _what_to_build(trigger, parameters)
        except ValueError as exc:
            return 400, api_error(400, "invalid_request", str(exc))
        build_id = self._add_build(repo, tag, commit=commit, phases=trigger.phases)
        return 201, self._build_view(build_id)


def _run_parameters(body: bytes) -> dict[str, Any]:
    """The start request's JSON, checked against quay's RunParameters schema."""
    try:
        parameters = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("Invalid JSON in the request body") from None
    if not isinstance(parameters, dict):
        raise ValueError(f"{parameters!r} is not of type 'object'")
    extra = sorted(set(parameters) - set(RUN_PARAMETERS))
    if extra:
        raise ValueError(f"Additional properties are not allowed ({', '.join(map(repr, extra))} unexpected)")
    refs = parameters.get("refs")
    if refs is not None and not (isinstance(refs, dict) and refs.get("kind") in ("tag", "branch") and isinstance(refs.get("name"), str) and refs["name"]):
        raise ValueError("refs must be {\"kind\": \"tag\" or \"branch\", \"name\": \"...\"}")
    return parameters


def _what_to_build(trigger: _Trigger, parameters: dict[str, Any]) -> tuple[str, str | None]:
    """(tag the build pushes, commit): the named ref for an SCM trigger, the commit for custom-git."""
    if trigger.service == "custom-git":
        commit = parameters.get("commit_sha")
        if not commit:
            raise ValueError("missing required parameter")
        return str(commit)[:7], str(commit)
    refs = parameters.get("refs") or {"kind": "branch", "name": parameters.get("branch_name") or "master"}
    return refs["name"], None
