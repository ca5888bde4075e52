"""The chain's memory inside one app checkout: what `tag` made, what `wait-image` found.

It lives in the checkout's git directory (never committed, survives `git clean`), so the three
commands chain with no arguments while explicit flags always win.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from manual_deploy.jsonfile import write_atomic

STATE_DIR = "manual-deploy"
STATE_FILE = "state.json"


def find_git_dir(path: str | os.PathLike[str]) -> Path | None:
    """The git directory of the checkout at `path`, or None outside a checkout (then nothing chains).

    git's own answer (worktrees, GIT_DIR) from one plumbing call; apply and wait-image need nothing
    more from the app repo, so they do not pay GitPython's import for it.
    """
    try:
        proc = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--absolute-git-dir"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


def state_path(git_dir: Path) -> Path:
    return Path(git_dir) / STATE_DIR / STATE_FILE


def load(git_dir: Path) -> dict[str, Any]:
    """The recorded state, or {} when nothing was recorded (or the file is unreadable)."""
    try:
        data = json.loads(state_path(git_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(git_dir: Path, step: str, data: dict[str, Any]) -> Path:
    """Store `data` under `step`, atomically; a new `tag` step starts a new chain."""
    current = {} if step == "tag" else load(git_dir)
    current[step] = {**data, "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return write_atomic(state_path(git_dir), current)
