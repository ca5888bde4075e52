"""An app repository the way ingest apps look on GitHub: a bare remote with master and dev.

Plain `git` subprocesses (argument lists only), so the fixture does not depend on the code under test.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

IDENTITY = ("-c", "user.name=Sandbox Engineer", "-c", "user.email=sandbox@example.org")
_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git in `cwd` with a fixed identity; return stdout."""
    proc = subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, env={**_ENV, "HOME": str(cwd)}, capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class AppRepo:
    """A bare remote plus a working checkout wired to it as `origin`."""

    name: str
    remote: Path
    checkout: Path

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.checkout, *args, check=check)

    def commit(self, message: str, filename: str = "CHANGES.md") -> str:
        path = self.checkout / filename
        with path.open("a") as handle:
            handle.write(message + "\n")
        self.git("add", filename)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def remote_git(self, *args: str) -> str:
        return git(self.remote, *args)


def make_app_repo(root: Path, name: str = "ingest-core") -> AppRepo:
    """Create `<root>/remotes/<name>.git` (master, dev) and `<root>/<name>` checked out on master."""
    remote = root / "remotes" / f"{name}.git"
    checkout = root / name
    remote.mkdir(parents=True)
    git(remote, "init", "-q", "--bare", "-b", "master")
    git(root, "clone", "-q", str(remote), str(checkout))
    repo = AppRepo(name, remote, checkout)
    repo.git("config", "user.name", "Sandbox Engineer")
    repo.git("config", "user.email", "sandbox@example.org")
    repo.git("checkout", "-q", "-B", "master")
    repo.commit(f"{name}: initial commit")
    repo.commit("add endpoint")
    repo.git("push", "-q", "origin", "master")
    repo.git("checkout", "-q", "-b", "dev")
    repo.commit("dev: work in progress")
    repo.git("push", "-q", "origin", "dev")
    repo.git("checkout", "-q", "master")
    return repo
