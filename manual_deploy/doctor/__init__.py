"""The preflight behind `manual-deploy doctor`: is this machine ready to deploy, and if not, what next?

Run before an incident gets worse, so every check is bounded (≤ 5 s each), the independent ones
run at once, and a check that hangs anyway (DNS, an EKS exec plugin) is abandoned at a hard
deadline instead of holding the engineer up (`runner`). Each failed finding carries the command
that fixes it. Secrets are reported only as "set"/"not set", and every line is masked once more
(the environment's secrets, the kubeconfig's tokens) before it leaves this package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from manual_deploy.doctor.checks_cluster import cluster_probe
from manual_deploy.doctor.checks_credentials import credential_checks, gitlab_token_check
from manual_deploy.doctor.checks_remote import network_probes
from manual_deploy.doctor.checks_tools import HELM_INSTALL_HINT, git_check, helm_check
from manual_deploy.doctor.preflight import config_check, context_check, kubeconfig_check, kubeconfig_secrets, selected_envs
from manual_deploy.doctor.report import Finding, Report
from manual_deploy.doctor.runner import CHECK_TIMEOUT_S, Probe, run_probes
from manual_deploy.redact import SECRET_ENV, redact

__all__ = ["DoctorRequest", "Finding", "Report", "run_doctor"]


@dataclass(frozen=True)
class DoctorRequest:
    config_path: str | None
    config_origin: str  # a key of preflight.CONFIG_ORIGINS
    envs: tuple[str, ...] = ()  # empty: every configured env
    kubeconfig: str | None = None


def run_doctor(request: DoctorRequest, out=None, environ: Mapping[str, str] = os.environ) -> Report:
    """All checks: local ones first (fast; the rest depend on them), then tools and network at once."""
    config, config_found = config_check(request.config_path, request.config_origin)
    envs = selected_envs(config, request.envs) if config is not None else []  # unknown --env: exit 2
    contexts = {env: context_check(config, env, request.kubeconfig) for env in envs}
    probes = [Probe("helm", lambda: [helm_check(config, environ)], HELM_INSTALL_HINT), Probe("git", lambda: [git_check()])]
    probes += [cluster_probe(target) for _, target in contexts.values() if target is not None]
    if config is not None:
        probes += network_probes(config, envs, environ)
    if out is not None:
        out.step(f"checking {len(probes)} things at once (each ≤ {CHECK_TIMEOUT_S:g} s)")
    found = run_probes(probes)
    findings = [config_found, *found["helm"], *found["git"], kubeconfig_check(request.kubeconfig)]
    for env, (context_found, _) in contexts.items():
        findings += [context_found, *found.get(f"cluster {env}", [])]
    for name in ("registry", "quay API", "deploy-config repo"):
        findings += found.get(name, [])
    findings += credential_checks(environ)
    if config is not None and config.gitlab.url:
        findings.append(gitlab_token_check(config.gitlab.url, environ))
    secrets = (*(environ.get(name) for name in SECRET_ENV), *kubeconfig_secrets(request.kubeconfig))
    return Report(tuple(_masked(finding, secrets) for finding in findings))


def _masked(finding: Finding, secrets: tuple[str | None, ...]) -> Finding:
    """A finding with every secret masked: a tool or a server may echo one back in its error."""
    hint = redact(finding.hint, *secrets) if finding.hint else None
    return Finding(finding.name, finding.status, redact(finding.detail, *secrets), hint)
