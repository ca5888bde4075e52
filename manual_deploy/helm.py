"""The helm driver: which helm binary to run (and, with the apply issue, how to run it).

Found in this order so a drill or CI can pin one without touching PATH: config `helm.executable`,
then $MANUAL_DEPLOY_HELM, then `helm` on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from manual_deploy.errors import UsageError

HELM_ENV_VAR = "MANUAL_DEPLOY_HELM"


def find_helm(configured: str | None = None, environ: dict[str, str] | os._Environ = os.environ) -> str:
    """Absolute path of the helm binary to use, or a usage error that says how to provide one."""
    for source, candidate in (("config helm.executable", configured), (f"${HELM_ENV_VAR}", environ.get(HELM_ENV_VAR))):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path.resolve())
            raise UsageError(f"{source} points at {candidate}, which is not an executable file", hint="fix the path")
    found = shutil.which("helm")
    if found:
        return found
    raise UsageError(
        "helm was not found on PATH",
        hint=f"install helm ≥ 3.8, or point {HELM_ENV_VAR} (or config helm.executable) at the binary",
    )
