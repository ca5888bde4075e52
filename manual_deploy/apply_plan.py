"""An `apply` plan as data: the request, the plan of one app, and the pure rules between them (which
apps, which image, which helm values), so the planner in `manual_deploy.apply` only does the I/O.

The request is checked before the first network call, so bad input fails with nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from manual_deploy import validate, yamlio
from manual_deploy.config import ResolvedApp
from manual_deploy.errors import UsageError
from manual_deploy.images import ImageRef

if TYPE_CHECKING:
    from manual_deploy.deployconfig import DeployConfig
    from manual_deploy.helm import Revision


@dataclass(frozen=True)
class ApplyRequest:
    env: str
    apps: tuple[str, ...] = ()
    image: str | None = None
    tag: str | None = None
    config_ref: str | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    timeout_s: float = 600.0
    reason: str = ""
    dry_run: bool = False
    yes: bool = False
    break_lock: bool = False
    force_refresh: bool = False
    replicas: int | None = None
    no_digest: bool = False
    recover: bool = False
    grace_s: float = 60.0
    repo: str = "."
    post_check: tuple[str, ...] | None = None
    rollback_on_check_failure: bool = False
    command: str = "apply"  # what the audit record and the team's messages call it (promote, deploy run apply too)
    source_ref: str | None = None  # the git tag the image was built from, when its image tag is not one (promote --retag)


@dataclass
class AppPlan:
    app: ResolvedApp
    tag: str
    image_ref: str  # what we deploy: repo:tag[@digest]
    image_value: str  # what the chart's `image` value gets
    digest: str | None
    replicas: int | None
    values: list[dict]
    current: Revision | None = None
    current_values: dict = field(default_factory=dict)
    chart: Any = None  # pyhelm3 Chart, loaded by the plan
    unchanged: bool = False
    recover: bool = False  # pending-*: roll it back once our lock is taken (a dead run's, or --recover)

    def describe(self) -> str:
        """One line: what runs now and what the plan makes of it (the plan phase's line and the dry run's)."""
        new = f"image {self.image_value}" + (f", replicas {self.replicas}" if self.replicas is not None else "")
        if self.current is None:
            return f"{self.app.name}: first install → {new}"
        old_image = self.current_values.get("image", "?")
        old_replicas = self.current_values.get("replicas")
        old = f"revision {self.current.number} ({self.current.status}), image {old_image}" + (
            f", replicas {old_replicas}" if old_replicas is not None else ""
        )
        if self.unchanged:
            return f"{self.app.name}: no change — {old}"
        return f"{self.app.name}: {old} → {new}"


def validate_flags(request: ApplyRequest) -> None:
    """Bad input fails before the first network call, with nothing changed."""
    if request.config_ref:
        validate.git_rev(request.config_ref)
    if request.tag:
        validate.image_tag(request.tag)
    for app in request.apps:
        validate.app_name(app)
    if request.replicas is not None and request.replicas < 0:
        raise UsageError(f"invalid --replicas {request.replicas}: a replica count cannot be negative",
                         hint="pass --replicas N with N 0 or more, or leave it out to use the config repo's count")


def choose_apps(request: ApplyRequest, recorded: dict) -> tuple[str, ...]:
    if request.apps:
        return request.apps
    app = (recorded.get("image") or {}).get("app") or (recorded.get("tag") or {}).get("app")
    if not app:
        raise UsageError(
            "no --app given and no app recorded in this checkout",
            hint="run `manual-deploy tag` and `wait-image` in the app checkout first, or pass --app APP",
        )
    return (app,)


def image_for(app: ResolvedApp, request: ApplyRequest, recorded: dict, single: bool) -> tuple[str, str | None]:
    """(tag, digest or None) from --image, --tag or the state left by wait-image/tag."""
    if request.image:
        if not single:
            raise UsageError("--image names one image; with several --app use --tag")
        ref = ImageRef.parse_strict(request.image)
        if not ref or not ref.tag:
            raise UsageError(f"invalid --image {request.image!r}", hint=f"use {app.image_repo}:<tag>[@sha256:…]")
        if ref.repo != app.image_repo:
            raise UsageError(
                f"--image {request.image} is not an image of {app.name} ({app.image_repo})",
                hint="check the app and the image; use --tag to pick a tag of the app's own repository",
            )
        return validate.image_tag(ref.tag), ref.digest
    if request.tag:
        return validate.image_tag(request.tag), None
    for step in ("image", "tag"):
        entry = recorded.get(step) or {}
        if entry.get("app") == app.name and entry.get("tag"):
            return entry["tag"], entry.get("digest")
    raise UsageError(
        f"no image given for {app.name} and none recorded in this checkout",
        hint="pass --image REF or --tag TAG, or run `manual-deploy tag` and `wait-image` first",
    )


def helm_values(deploy: DeployConfig, app: ResolvedApp, env: str, image_value: str, replicas: int | None) -> list[dict]:
    """What GitLab's deploy job passes: -f apps/<env>.yaml plus --set-string overrides."""
    from manual_deploy.gitlab import gitlab_slug  # with GitLab's client: not before the warm-up starts

    base = yamlio.safe_load(deploy.values_file(env).read_text()) or {}
    overrides = {
        "environment": env,
        "image": image_value,
        "gitlab_app": gitlab_slug(app.gitlab_project),
        "gitlab_env": gitlab_slug(env),
    }
    if replicas is not None:
        overrides["replicas"] = str(replicas)
    fastq = deploy.environment(env).get("FASTQ_VALIDATOR_IMAGE")
    if fastq:
        overrides["fastqImage"] = fastq
    return [base, overrides]
