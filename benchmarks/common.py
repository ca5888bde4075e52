"""Shared pieces of the benchmarks: an isolated environment, the deploy bed, timing and reporting.

Everything a benchmark starts lives under one temporary directory and is stopped in `finally`
blocks (registry, kube emulator, quay stand-in, fault proxy). MANUAL_DEPLOY_CACHE_DIR,
MANUAL_DEPLOY_STATE_DIR, KUBECONFIG and HOME point into that directory, so the user's real state
is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
CLI = VENV / "bin" / "manual-deploy"
HELM = ROOT / ".tools" / "helm3"
KUBE_TOKEN = "kube-token-bench-0123456789"
NS = "prod-environment"
CONTEXT = "ingest-eks-prod"


def compile_bytecode() -> None:
    """Give manual_deploy's modules their .pyc files, as `pip install` does for an installed copy.

    This checkout is installed editable, and with PYTHONDONTWRITEBYTECODE=1 (set on this machine)
    Python would recompile every module of ours on every run (≈ 0.05 s of an apply): a cost of the
    developer's checkout, not of the product users install.
    """
    import compileall

    compileall.compile_dir(str(ROOT / "manual_deploy"), quiet=1)


# The eight apps of P5: all have a replica variable in the fixture's config/replicas files.
EIGHT_APPS = (
    "ingest-broker", "ingest-core", "ingest-exporter", "ingest-staging-manager",
    "ingest-state-tracking", "ingest-validator", "ingest-ui", "ingest-graph-validator",
)


# ------------------------------------------------------------------------------------------ results


@dataclass
class Figure:
    """One printed line: `P2a apply overhead (unchanged)  1.12x  target <= 1.3x  PASS`."""

    key: str
    name: str
    value: float
    unit: str  # "x" for ratios, "s", "req/s"
    target: float
    better: str  # "le" (value must be <= target) or "ge"
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.value <= self.target if self.better == "le" else self.value >= self.target

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"

    def fmt_value(self) -> str:
        return f"{self.value:.2f}{self.unit}" if self.unit == "x" else f"{self.value:.2f} {self.unit}"

    def fmt_target(self) -> str:
        op = "<=" if self.better == "le" else ">="
        return f"{op} {self.target:g}{self.unit}" if self.unit == "x" else f"{op} {self.target:g} {self.unit}"

    def line(self) -> str:
        return f"{self.key:<4} {self.name:<44} {self.fmt_value():>10}  target {self.fmt_target():<12} {self.verdict}"


@dataclass
class Result:
    """What one benchmark hands back: its figures, free-text notes (raw medians, causes) and errors."""

    key: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def log(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ timing


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def side_by_side(a: Callable[[int], float], b: Callable[[int], float], runs: int, warmup: int = 1
                 ) -> tuple[list[float], list[float]]:
    """Run a and b alternately (a0 b0 a1 b1 …) after `warmup` unmeasured rounds; each returns seconds.

    Interleaving makes both sides see the same background load on a shared, noisy machine.
    The argument is the round number (warm-up rounds are negative).
    """
    for w in range(warmup):
        a(-1 - w)
        b(-1 - w)
    ta, tb = [], []
    for i in range(runs):
        ta.append(a(i))
        tb.append(b(i))
    return ta, tb


def timed_run(argv: list[str], env: dict[str, str], *, check: bool = True, cwd: Path | None = None,
              timeout: float = 300) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))}… exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return took, proc


def spread(xs: list[float]) -> str:
    return f"median {median(xs):.3f}s (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})"


# ------------------------------------------------------------------------------------------ environment


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temp directory removed afterwards (processes using it must be stopped first).

    Every benchmark starts here, so this is also where our modules get their bytecode.
    """
    compile_bytecode()
    path = Path(tempfile.mkdtemp(prefix=f"md-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """os.environ minus manual-deploy/quay settings, with HOME, cache, state and KUBECONFIG in `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MANUAL_DEPLOY_", "QUAY_", "KUBECONFIG"))}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        MANUAL_DEPLOY_CACHE_DIR=str(tmp / "cache"),
        MANUAL_DEPLOY_STATE_DIR=str(tmp / "state"),
        KUBECONFIG=str(tmp / "kubeconfig"),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """Make this process's os.environ equal `env` for in-process calls (P4), then restore it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_config(path: Path, *, registry_url: str, deploy_url: str, api_url: str | None = None, helm: Path = HELM) -> Path:
    """The sandbox's config (every bundled ingest app) pointed at this benchmark's bed."""
    from manual_deploy_sandbox.drill import write_config as sandbox_config

    return sandbox_config(path, registry_url=registry_url, api_url=api_url or f"{registry_url}/api/v1",
                          deploy_url=deploy_url, helm=str(helm))


@dataclass
class Bed:
    tmp: Path
    env: dict[str, str]
    config: Path
    registry: object
    deploy_repo: object
    kube: object

    def publish(self, app: str, tag: str) -> str:
        from manual_deploy_sandbox.registry import publish_image

        return publish_image(self.registry.url, f"ebi-ait/{app}", tag)

    def image(self, app: str, tag: str, digest: str) -> str:
        return f"{self.registry.host}/ebi-ait/{app}:{tag}@{digest}"

    def apply(self, apps: list[str], tag: str, *extra: str) -> tuple[float, subprocess.CompletedProcess]:
        argv = [str(CLI), "--config", str(self.config), "apply", "--env", "prod", "--yes", "--tag", tag]
        for app in apps:
            argv += ["--app", app]
        return timed_run(argv + list(extra), self.env)


def seed_prerequisites(kube, apps_dir: Path, env: str = "prod") -> list[str]:
    """Create what the fixture's charts reference (ingest-broker: Secrets and the `retained-gp2` class), as EKS has."""
    from manual_deploy_sandbox import prerequisites
    from manual_deploy_sandbox.deployrepo import INGEST_APPS

    needs = prerequisites.Needs()
    for app in INGEST_APPS:
        overrides = {"environment": env, "image": "bench", "replicas": "1", "gitlab_app": app, "gitlab_env": env,
                     "fastqImage": "bench"}
        manifests = prerequisites.render(str(HELM), apps_dir / app, apps_dir / f"{env}.yaml", overrides, NS)
        prerequisites.read(manifests, NS, needs)
    return prerequisites.seed(kube, needs)


@contextlib.contextmanager
def deploy_bed(tmp: Path, *, history: int = 3, pod_start_delay: float = 0.2) -> Iterator[Bed]:
    """Real registry + ingest-kube-deployment fixture + emulated EKS (3 contexts) + kubeconfig + config."""
    from manual_deploy_sandbox.deployrepo import make_deploy_repo
    from manual_deploy_sandbox.kube import KubeEmulator
    from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig
    from manual_deploy_sandbox.registry import start_registry

    env = isolated_env(tmp)
    registry = kube = None
    try:
        registry = start_registry(tmp / "registry")
        deploy_repo = make_deploy_repo(tmp / "deploy-config", history=history)
        kube = KubeEmulator(token=KUBE_TOKEN, pod_start_delay=pod_start_delay, progress_deadline=2.0).start()
        seed_prerequisites(kube, deploy_repo.work / "apps")
        write_kubeconfig(Path(env["KUBECONFIG"]), ingest_contexts(kube.url), token=KUBE_TOKEN)
        config = write_config(tmp / "config.yaml", registry_url=registry.url, deploy_url=deploy_repo.url)
        yield Bed(tmp=tmp, env=env, config=config, registry=registry, deploy_repo=deploy_repo, kube=kube)
    finally:
        if kube is not None:
            kube.stop()
        if registry is not None:
            registry.stop()


def print_result(result: Result) -> int:
    for f in result.figures:
        print(f.line())
        if f.detail:
            print(f"       {f.detail}")
    for n in result.notes:
        print(f"       note: {n}")
    if result.error:
        print(f"{result.key}   ERROR {result.error}")
    return 0
