"""What doctor found: one finding per line of the report, and whether the machine is ready. Data only;
`manual_deploy/views/doctor.py` renders it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, FAIL, WARN = "ok", "fail", "warn"


@dataclass(frozen=True)
class Finding:
    """One line of the report; `hint` is the next command for a failed or warning finding."""

    name: str
    status: str  # OK, FAIL or WARN
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Warnings (optional things) never make doctor fail; a failed required check does."""
        return not self.failed

    @property
    def failed(self) -> int:
        return sum(finding.status == FAIL for finding in self.findings)

    @property
    def warnings(self) -> int:
        return sum(finding.status == WARN for finding in self.findings)

    def as_dict(self) -> dict:
        """The JSON result; `checks` is the documented key scripts read."""
        return {"ok": self.ok, "checks": [asdict(finding) for finding in self.findings]}
