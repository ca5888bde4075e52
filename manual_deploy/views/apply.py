"""The result on stdout of the verbs that run apply (apply, deploy, promote): one line per app, or the
plan and manifest diff of a dry run. stderr has the progress; this is what a script reads."""

from __future__ import annotations

from typing import Any


def result_text(summary: dict[str, Any]) -> str:
    """The dry run's plan and diff, or one line per app of what was deployed."""
    if summary.get("dry_run"):
        return dry_run_text(summary)
    return "\n".join(app_line(summary["env"], row) for row in summary["results"])


def dry_run_text(summary: dict[str, Any]) -> str:
    """Each app's plan line, then its manifest diff (or that there is none)."""
    return "\n".join(f"{r['plan']}\n{r['diff'] or '(no manifest changes)'}" for r in summary["results"])


def app_line(env: str, row: dict[str, Any]) -> str:
    """`app env result revision image [GitLab record]`, tab-separated for cut/awk."""
    line = f"{row['app']}\t{env}\t{row['result']}\trevision {row.get('new_revision')}\t{row.get('image')}"
    return line + (f"\t{row['gitlab']}" if row.get("gitlab") else "")
