"""`gitlab-sync`'s result on stdout: one line per record posted (or that would be), then the counts."""

from __future__ import annotations

from typing import Any


def sync_text(result: dict[str, Any]) -> str:
    lines = [f"{r['env']}\t{r['app']}\t{r['ref']}\t{r['sha']}\t{r['status']}\tdeployment #{r['iid']}" for r in result["recorded"]]
    lines += [f"{r['env']}\t{r['app']}\t{r['ref']}\t{r['sha']}\t{r['status']}\twould: {r['post']}" for r in result["would_record"]]
    return "\n".join([*lines, result["summary"]])
