"""The layering the code promises, read from the source: no private name crosses a module, rendering is
called only from the commands, and each shared concept has one owner (a second copy fails here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "manual_deploy"


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PRODUCT.rglob("*.py")}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imported_modules(tree: ast.Module) -> dict[str, str]:
    """Local name → module, for `import manual_deploy.x as y` and `from manual_deploy import x`."""
    modules = set(_modules())
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def test_no_module_imports_a_private_name_of_another():
    crossings = []
    for name, path in _modules().items():
        tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("manual_deploy"):
                crossings += [f"{name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
            if isinstance(node, ast.Import):
                crossings += [f"{name}: import {a.name}" for a in node.names
                              if a.name.startswith("manual_deploy") and any(part.startswith("_") and not part.startswith("__")
                                                                            for part in a.name.split("."))]
        modules = _imported_modules(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossings.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert crossings == []


def test_views_are_called_only_from_the_commands():
    callers = []
    for name, path in _modules().items():
        if name.startswith(("manual_deploy.commands", "manual_deploy.views", "manual_deploy.cli")):
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("manual_deploy.views"):
                callers.append(f"{name} imports {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module == "manual_deploy" and any(a.name == "views" for a in node.names):
                callers.append(f"{name} imports manual_deploy.views")
    assert callers == []


def _owners(pattern: str) -> list[str]:
    found = re.compile(pattern)
    return sorted(name for name, path in _modules().items() if found.search(path.read_text(encoding="utf-8")))


def test_the_release_description_has_one_owner():
    """Written and parsed in one module: its text appears nowhere else."""
    assert len(_owners(r"manual-deploy by [{(\"]")) == 1, _owners(r"manual-deploy by [{(\"]")


def test_api_refusals_have_one_owner():
    """A 401/403 from the Kubernetes API is worded in the kube module only."""
    assert _owners(r"refused the credentials \(HTTP 401") == ["manual_deploy.kube"]
    assert _owners(r"ApiException.*\b40[13]\b|\b40[13]\b.*ApiException") in ([], ["manual_deploy.kube"])


def test_drift_has_one_owner():
    """Whether the cluster runs what helm says is decided by one rule, wherever it is shown."""
    assert len(_owners(r"def \w*drift\w*\(")) == 1, _owners(r"def \w*drift\w*\(")
