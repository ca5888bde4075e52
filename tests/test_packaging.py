"""The product ships without its stand-ins: the wheel holds no emulator, no product module imports the
sandbox distribution, and `manual-deploy sandbox` says how to install it when it is missing.

"Missing" is a real interpreter whose import path is this venv's site-packages minus the sandbox
distribution (symlinks to everything else): nothing is mocked.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "manual_deploy"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_product_module_names_the_sandbox_distribution():
    offenders = [str(p.relative_to(ROOT)) for p in PRODUCT.rglob("*.py")
                 if any(name.split(".")[0] == "manual_deploy_sandbox" for name in _imports(p))]
    assert offenders == []


def test_importing_every_product_module_loads_no_stand_in():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in PRODUCT.rglob("*.py")
                     if p.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('manual_deploy_sandbox', 'kmock', 'aiohttp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_product_wheel_holds_no_stand_in(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("manual_deploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name == "manual_deploy/cli.py" for name in names)
    assert [n for n in names if "sandbox" in n and n != "manual_deploy/commands/sandbox.py"] == []
    assert [n for n in names if "emulator" in n or "kmock" in n] == []


@pytest.fixture
def site_without_sandbox(tmp_path) -> Path:
    """This venv's site-packages as symlinks, minus everything of manual-deploy-sandbox."""
    site = Path(sysconfig.get_paths()["purelib"])
    farm = tmp_path / "site"
    farm.mkdir()
    for entry in site.iterdir():
        if "manual_deploy_sandbox" in entry.name or entry.suffix == ".pth":
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


def test_sandbox_says_how_to_install_it_when_it_is_missing(site_without_sandbox):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site_without_sandbox)])}
    run = subprocess.run([sys.executable, "-S", "-m", "manual_deploy", "sandbox", "up", "--dir", "/nonexistent"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    assert "the sandbox is not installed" in run.stderr
    assert "pipx inject manual-deploy ./sandbox" in run.stderr
    assert "Traceback" not in run.stderr
    assert not Path("/nonexistent").exists()
    # the rest of the tool works without it
    helped = subprocess.run([sys.executable, "-S", "-m", "manual_deploy", "--help"], capture_output=True, text=True,
                            timeout=60, env=env, cwd=ROOT)
    assert helped.returncode == 0 and "sandbox" in helped.stdout


def test_sandbox_commands_run_when_it_is_installed(tmp_path):
    run = subprocess.run([sys.executable, "-m", "manual_deploy", "sandbox", "env", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2
    assert f"the sandbox is not running in {tmp_path}" in run.stderr
