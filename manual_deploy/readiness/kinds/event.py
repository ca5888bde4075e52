"""Event: read for why a resource is not ready (the watch's Read.EVENTS)."""

from __future__ import annotations

from manual_deploy.readiness.kinds import Kind

KIND = Kind("Event", "/api/v1", "events", verbs=("list",), why="why a resource is not ready")
