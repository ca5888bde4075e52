"""The config file: registry, deploy-config repo, environments and apps.

Validated with pydantic so that a wrong key is reported by its dotted path before anything
touches git, a registry or a cluster. Per-app defaults follow what the ingest charts and the
GitLab templates do, so most apps need no lines of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from manual_deploy import validate, yamlio
from manual_deploy.errors import ConfigError, UsageError

CONFIG_ENV_VAR = "MANUAL_DEPLOY_CONFIG"
DEFAULT_CONFIG_NAME = "ingest.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


class Registry(_Strict):
    url: str = Field(description="registry v2 base URL; image references use its host")
    api_url: str = Field(description="quay API v1 base URL")
    namespace: str

    _urls = field_validator("url", "api_url")(_http_url)

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


class DeploymentRepo(_Strict):
    url: str = Field(description="git URL of the ingest-kube-deployment repository")


class Environment(_Strict):
    kube_context: str
    namespace: str
    config_branch: str = Field(description="branch of the deploy-config repo to deploy from")
    source_branch: str = Field(description="app branch a commit must be on to ship to this env")
    confirm: bool = Field(False, description="ask for confirmation before changing this env")
    cluster_server: str | None = Field(None, description="expected API server URL of the context")
    post_check: list[str] | None = Field(
        None, description="argv run after a verified deploy (no shell); MD_ENV/MD_APP/MD_IMAGE/MD_NAMESPACE set"
    )

    @field_validator("config_branch", "source_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        try:
            return validate.branch_name(value)
        except UsageError as exc:
            raise ValueError(exc.message) from None


class App(_Strict):
    image_repo: str | None = Field(None, description="default <registry host>/<namespace>/<app>")
    chart: str | None = Field(None, description="chart dir in the deploy repo, default apps/<app>")
    release: str | None = Field(None, description="helm release name, default <app>")
    replicas_variable: str | None = Field(
        None, description="variable in config/replicas/environment_<env>; null: the chart fixes replicas"
    )
    image_style: Literal["full", "tag"] = Field(
        "full", description="'full': the chart takes repo:tag; 'tag': it takes the bare tag"
    )
    gitlab_project: str | None = Field(None, description="GitLab project path, default hca/<app>")


class Helm(_Strict):
    executable: str | None = Field(None, description="helm binary; else $MANUAL_DEPLOY_HELM, else helm on PATH")


class Notify(_Strict):
    webhook_url: str | None = Field(None, description="Slack-compatible incoming webhook; or $MANUAL_DEPLOY_WEBHOOK_URL")


class GitLab(_Strict):
    url: str | None = Field(None, description="GitLab base URL whose deployment records `gitlab-sync` fills in; null: none")

    _url = field_validator("url")(lambda value: None if value is None else _http_url(value))


class Config(_Strict):
    registry: Registry
    deployment_repo: DeploymentRepo
    environments: dict[str, Environment]
    apps: dict[str, App]
    helm: Helm = Field(default_factory=Helm)
    notify: Notify = Field(default_factory=Notify)
    gitlab: GitLab = Field(default_factory=GitLab)
    _source: str = PrivateAttr("<memory>")

    @property
    def source(self) -> str:
        """Where this config was read from, for messages."""
        return self._source

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, Environment]) -> dict[str, Environment]:
        for name in value:
            if not validate.ENV_NAME.match(name):
                raise ValueError(f"environment name {name!r} must match {validate.ENV_NAME.pattern}")
        if not value:
            raise ValueError("at least one environment is required")
        return value

    @field_validator("apps", mode="before")
    @classmethod
    def _app_names(cls, value: object) -> object:
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not validate.APP_NAME.match(name):
                    raise ValueError(f"app name {name!r} must match {validate.APP_NAME.pattern}")
            # `ingest-core:` with nothing after it means "all defaults".
            return {name: ({} if spec is None else spec) for name, spec in value.items()}
        return value

    def environment(self, name: str) -> Environment:
        validate.env_name(name)
        if name not in self.environments:
            raise UsageError(
                f"unknown environment {name!r}",
                hint=f"configured environments: {', '.join(self.environments)} (config: {self.source})",
            )
        return self.environments[name]

    def app(self, name: str) -> "ResolvedApp":
        validate.app_name(name)
        if name not in self.apps:
            raise UsageError(
                f"unknown app {name!r}",
                hint=f"configured apps: {', '.join(sorted(self.apps))} (config: {self.source})",
            )
        return ResolvedApp.resolve(name, self.apps[name], self.registry)


@dataclass(frozen=True)
class ResolvedApp:
    """An app with every default filled in: what the rest of the code works with."""

    name: str
    image_repo: str
    chart: str
    release: str
    replicas_variable: str | None
    image_style: str
    gitlab_project: str

    @classmethod
    def resolve(cls, name: str, spec: App, registry: Registry) -> "ResolvedApp":
        fixed_replicas = "replicas_variable" in spec.model_fields_set and spec.replicas_variable is None
        return cls(
            name=name,
            image_repo=spec.image_repo or f"{registry.host}/{registry.namespace}/{name}",
            chart=spec.chart or f"apps/{name}",
            release=spec.release or name,
            replicas_variable=None if fixed_replicas else (spec.replicas_variable or default_replicas_variable(name)),
            image_style=spec.image_style,
            gitlab_project=spec.gitlab_project or f"hca/{name}",
        )

    def image_value(self, tag: str) -> str:
        """What the chart's `image` value must be for this tag."""
        return tag if self.image_style == "tag" else f"{self.image_repo}:{tag}"


def default_replicas_variable(app: str) -> str:
    """The GitLab template's rule: upper-case, '-' -> '_', plus _REPLICAS."""
    return app.upper().replace("-", "_") + "_REPLICAS"


def _format_validation_error(exc: ValidationError, source: str) -> ConfigError:
    problems = exc.errors()
    # An unknown key first: a typo (`nmespace`) explains the required key it leaves missing (`namespace`).
    first = next((e for e in problems if e["type"] == "extra_forbidden"), problems[0])
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        import difflib

        missing = [str(e["loc"][-1]) for e in problems if e["type"] == "missing" and e["loc"][:-1] == first["loc"][:-1]]
        close = difflib.get_close_matches(str(first["loc"][-1]), missing, n=1)
        message = f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ConfigError(
        f"invalid config {source}: {where}: {message}{suffix}",
        hint="fix the file; the shipped example is configs/ingest.yaml",
    )


def parse_config(text: str, source: str) -> Config:
    try:
        data = yamlio.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(
            f"config {source} is not valid YAML{where}" + (f": {problem}" if problem else ""),
            hint="check indentation and quoting; a bracket or quote may be left open",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a YAML mapping", hint="see configs/ingest.yaml")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(exc, source) from None
    config._source = source
    return config


def default_config_text() -> str:
    return resources.files("manual_deploy.defaults").joinpath(DEFAULT_CONFIG_NAME).read_text()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path`, else $MANUAL_DEPLOY_CONFIG, else the bundled ingest config."""
    chosen = path if path is not None else os.environ.get(CONFIG_ENV_VAR) or None
    if chosen is None:
        return parse_config(default_config_text(), f"(bundled {DEFAULT_CONFIG_NAME})")
    file = Path(chosen).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}", hint=f"pass --config PATH or set {CONFIG_ENV_VAR}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {file} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
            hint="save it as UTF-8 YAML (see configs/ingest.yaml), or pass --config PATH of another file",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {file}: {exc.strerror}",
            hint=f"pass --config PATH (or set {CONFIG_ENV_VAR}) to a readable YAML file",
        ) from None
    return parse_config(text, str(file))
