"""Where manual-deploy keeps things on the user's machine (XDG base directories).

- cache: the deploy-config clone, reused and fetched next time;
- state: the audit log (one JSON line per deploy) — the record of what happened;
- the sandbox (`manual-deploy sandbox`), under state unless a shell was pointed at one.
Each can be moved with an environment variable, which the sandbox and the tests use.
"""

from __future__ import annotations

import os
from pathlib import Path


def _base(override: str, xdg: str, fallback: str) -> Path:
    if os.environ.get(override):
        return Path(os.environ[override]).expanduser()
    root = os.environ.get(xdg) or str(Path.home() / fallback)
    return Path(root).expanduser() / "manual-deploy"


def cache_dir() -> Path:
    return _base("MANUAL_DEPLOY_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def state_dir() -> Path:
    return _base("MANUAL_DEPLOY_STATE_DIR", "XDG_STATE_HOME", ".local/state")


SANDBOX_DIR_ENV = "MANUAL_DEPLOY_SANDBOX_DIR"


def sandbox_dir() -> Path:
    """The sandbox `sandbox env` pointed this shell at, else the per-user one.

    Its env lines also move MANUAL_DEPLOY_STATE_DIR into the sandbox, so the state dir alone would
    then name a sandbox inside the sandbox.
    """
    exported = os.environ.get(SANDBOX_DIR_ENV)
    return Path(exported).expanduser() if exported else state_dir() / "sandbox"


def audit_log() -> Path:
    return state_dir() / "audit.jsonl"
