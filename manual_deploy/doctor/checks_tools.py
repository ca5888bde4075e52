"""The tools apply shells out to: helm (≥ 3.8) and git."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Mapping

from manual_deploy.config import Config
from manual_deploy.doctor.report import FAIL, OK, Finding
from manual_deploy.doctor.runner import CHECK_TIMEOUT_S, last_line, run_bounded
from manual_deploy.errors import ManualDeployError
from manual_deploy.helm import HELM_ENV_VAR, find_helm
from manual_deploy.kube import error_line

MIN_HELM = (3, 8)
HELM_INSTALL_HINT = (
    f"install helm ≥ {MIN_HELM[0]}.{MIN_HELM[1]} (https://helm.sh/docs/intro/install/), "
    f"or point {HELM_ENV_VAR} (or config helm.executable) at it"
)


def _helm_origin(config: Config | None, environ: Mapping[str, str]) -> str:
    if config is not None and config.helm.executable:
        return "config helm.executable"
    return f"${HELM_ENV_VAR}" if environ.get(HELM_ENV_VAR) else "PATH"


def helm_check(config: Config | None, environ: Mapping[str, str]) -> Finding:
    """apply needs helm ≥ 3.8 (OCI support went GA there); older ones are refused rather than half-working."""
    origin = _helm_origin(config, environ)
    try:
        path = find_helm(config.helm.executable if config is not None else None, environ)
    except ManualDeployError as exc:
        return Finding("helm", FAIL, f"{exc.message} (from {origin})", HELM_INSTALL_HINT)
    try:
        proc = run_bounded([path, "version", "--template", "{{.Version}}"], timeout=CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("helm", FAIL, f"{path} did not run: {error_line(exc)}", HELM_INSTALL_HINT)
    version = parse_version(proc.stdout)
    if proc.returncode != 0 or version is None:
        said = last_line(proc.stderr or proc.stdout) or f"exit status {proc.returncode}"
        return Finding("helm", FAIL, f"`{path} version` gave no version: {said}", HELM_INSTALL_HINT)
    shown = proc.stdout.strip()
    if version[:2] < MIN_HELM:
        return Finding("helm", FAIL, f"{shown} at {path} (from {origin}) is older than {MIN_HELM[0]}.{MIN_HELM[1]}",
                       HELM_INSTALL_HINT)
    return Finding("helm", OK, f"{shown} at {path} (from {origin})")


def git_check() -> Finding:
    """tag and apply shell out to git; without it nothing works."""
    hint = "install git (`sudo apt-get install git` or `brew install git`)"
    path = shutil.which("git")
    if path is None:
        return Finding("git", FAIL, "git was not found on PATH", hint)
    try:
        proc = run_bounded([path, "--version"], timeout=CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("git", FAIL, f"{path} did not run: {error_line(exc)}", hint)
    if proc.returncode != 0:
        return Finding("git", FAIL, f"`{path} --version` failed: {last_line(proc.stderr)}", hint)
    return Finding("git", OK, f"{proc.stdout.strip().removeprefix('git version ')} at {path}")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None
