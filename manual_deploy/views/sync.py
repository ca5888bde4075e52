"""`gitlab-sync`'s result on stdout: one line per record posted (or that would be, or that waits), each with its
record id's first 12 characters (what `--skip` takes), then the counts."""

from __future__ import annotations

from typing import Any


def _line(row: dict[str, Any], outcome: str) -> str:
    return "\t".join([row["record"][:12], row["env"], row["app"], row["ref"], str(row.get("sha")), row["status"], outcome])


def sync_text(result: dict[str, Any]) -> str:
    lines = [_line(r, f"deployment #{r['iid']}") for r in result["recorded"]]
    lines += [_line(r, f"would: {r['post']}") for r in result["would_record"]]
    lines += [_line(r, f"being recorded by {r['by']}") for r in result.get("being_recorded", [])]
    lines += [_line(r, f"kept: {r['skip']}" if r.get("skip") else "kept") for r in result.get("kept", [])]
    return "\n".join([*lines, result["summary"]])


def skip_text(result: dict[str, Any]) -> str:
    row = result["skipped"]
    return "\t".join([row["record"][:12], row["env"], row["app"], row["ref"], f"skipped by {row['by']}: {row['why']}"])
