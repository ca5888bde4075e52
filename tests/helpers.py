"""Small assertions helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path


def tags(repo_path: Path) -> dict[str, str]:
    """{tag name: commit it peels to} in a local repo or bare remote."""
    from manual_deploy.sandbox.gitrepos import git

    out = git(repo_path, "for-each-ref", "refs/tags/", "--format=%(refname:strip=2) %(*objectname) %(objectname)")
    result = {}
    for line in out.splitlines():
        name, peeled, obj = line.split(" ")
        result[name] = peeled or obj
    return result
