"""Per-invocation settings shared by all commands: output and the (lazily loaded) config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from manual_deploy.console import Output

if TYPE_CHECKING:
    from manual_deploy.config import Config


@dataclass
class Session:
    config_path: str | None = None
    out: Output = field(default_factory=Output)
    _config: "Config | None" = None

    def config(self) -> "Config":
        """Load and validate the config on first use, so `--help` never parses YAML."""
        if self._config is None:
            from manual_deploy.config import load_config

            self._config = load_config(self.config_path)
            self.out.debug(f"config: {self._config.source}")
        return self._config
