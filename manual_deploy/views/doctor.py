"""doctor's report as text: one ✓/✗/! line per finding, the next command under each ✗ and !, then the counts."""

from __future__ import annotations

from manual_deploy.doctor.report import FAIL, OK, WARN, Report

MARKS = {OK: "✓", FAIL: "✗", WARN: "!"}


def report_text(report: Report) -> str:
    """Names padded to one width, so the details line up and a ✗ stands out at 3 a.m."""
    width = max((len(finding.name) for finding in report.findings), default=0)
    lines = []
    for finding in report.findings:
        lines.append(f"{MARKS[finding.status]} {finding.name.ljust(width)}  {finding.detail}")
        if finding.hint and finding.status != OK:
            lines.append(f"  {' ' * width}  next: {finding.hint}")
    lines.append(summary(report))
    return "\n".join(lines)


def summary(report: Report) -> str:
    """`21 checks, 1 failed, 2 warnings`: the last line of the report and the error line when it fails."""
    warnings = f", {report.warnings} warning{'s' if report.warnings != 1 else ''}" if report.warnings else ""
    return f"{len(report.findings)} checks, {report.failed} failed{warnings}"
