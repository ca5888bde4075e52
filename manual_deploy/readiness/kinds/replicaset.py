"""ReplicaSet: read to find a Deployment's current pods; one in a chart is ready once it exists."""

from __future__ import annotations

from manual_deploy.readiness.kinds import Kind

KIND = Kind("ReplicaSet", "/apis/apps/v1", "replicasets", verbs=("list",), why="the rollout watch")
