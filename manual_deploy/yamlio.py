"""YAML reading for every file apply touches (config, kubeconfig, values, Chart.yaml)."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it: the same safe constructors, about ten times
# faster than the pure-Python one (≈ 30 ms of an apply's start-up otherwise).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, with the C parser where available; raises yaml.YAMLError like it."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


def safe_load_all(text: str) -> list[Any]:
    """`yaml.safe_load_all` as a list (multi-document manifests), with the C parser where available."""
    return list(yaml.load_all(text, Loader=_LOADER))  # noqa: S506 - a safe loader
