"""`rollback`'s result on stdout: one tab-separated line, for a human and for `cut`."""

from __future__ import annotations

from typing import Any


def result_line(result: dict[str, Any]) -> str:
    return f"{result['app']}\t{result['env']}\t{result['result']}\trevision {result['new_revision']}\t{result['image']}"
