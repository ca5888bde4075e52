"""Git lookups for the GitLab stand-in: what GitLab's copy of a repository (a bare repo) knows.

Real `git` with argument lists and a timeout, so "unknown to GitLab" means exactly "not in that repository"
(a pull mirror that has not caught up), the case a backfill after an outage has to cope with.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

GIT_TIMEOUT = 10  # seconds per git call; a stuck git must not hang a request thread forever
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT, env={**_ENV, "HOME": str(repo)}, check=False)


def _usable(rev: str) -> bool:
    """A revision we may hand to git: never an option, never empty, no control characters."""
    return bool(rev) and not rev.startswith("-") and not any(ord(c) < 32 for c in rev)


def resolve_commit(repo: Path, rev: str) -> str | None:
    """Full SHA of the commit `rev` (sha, short sha, branch, tag) names in `repo`, or None (GitLab's project.commit)."""
    if not _usable(rev):
        return None
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def iso_ms(value: str) -> str:
    """git's strict ISO date ("2026-01-01T00:00:00+02:00") as GitLab renders commit times (with .000)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def commit_info(repo: Path, rev: str) -> dict | None:
    """The commit as GitLab's Commit entity shows it, or None when `repo` does not have it."""
    sha = resolve_commit(repo, rev)
    if sha is None:
        return None
    fmt = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
    proc = _git(repo, "show", "-s", f"--format={fmt}", sha)
    if proc.returncode != 0:
        return None
    full, parents, an, ae, ad, cn, ce, cd, message = proc.stdout.split("\x00", 8)
    message = message.rstrip("\n") + "\n" if message.strip() else ""
    return {
        "id": full, "short_id": full[:8], "created_at": iso_ms(cd), "parent_ids": parents.split(),
        "title": message.split("\n", 1)[0], "message": message,
        "author_name": an, "author_email": ae, "authored_date": iso_ms(ad),
        "committer_name": cn, "committer_email": ce, "committed_date": iso_ms(cd),
    }


def find_tag(repo: Path, name: str) -> dict | None:
    """The tag `name` (exact, not a prefix) as GitLab's Tag entity shows it, or None."""
    if not _usable(name):
        return None
    ref = f"refs/tags/{name}"
    fmt = "%(refname)%00%(objectname)%00%(objecttype)%00%(contents)"
    proc = _git(repo, "for-each-ref", f"--format={fmt}%01", ref)
    for row in proc.stdout.split("\x01"):
        fields = row.lstrip("\n").split("\x00", 3)
        if len(fields) == 4 and fields[0] == ref:
            target, kind, contents = fields[1], fields[2], fields[3]
            commit = commit_info(repo, target)
            if commit is None:
                return None  # a tag of a tree or blob: GitLab would not show a commit either
            message = contents.strip() if kind == "tag" else ""
            return {"name": name, "message": message, "target": target, "commit": commit,
                    "release": None, "protected": False}
    return None


def default_branch(repo: Path) -> str | None:
    """The branch HEAD points at in GitLab's copy (GitLab's default_branch); None when it has no commits."""
    proc = _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
    branch = proc.stdout.strip()
    return branch if proc.returncode == 0 and resolve_commit(repo, branch) else None


def write_ref(repo: Path, ref: str, sha: str) -> None:
    """Best effort, like GitLab's deployment ref: keeps the deployed SHA reachable in its copy."""
    _git(repo, "update-ref", ref, sha)


def now_iso() -> str:
    """GitLab's API timestamp format: UTC, milliseconds, Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
