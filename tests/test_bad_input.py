"""A wall of bad inputs: every command and option, each refused with its documented exit code,
one `error:` line and a `next:` line, no traceback, and nothing changed.

All cases share one module-wide bed (registry, deploy-config repo, emulated cluster, app checkout) on
which ingest-core is deployed twice to prod (revisions 1 and 2). Before and after each case the test
takes a snapshot of everything a bad input must not touch: the app remote's and checkout's tags, every
write request the cluster received, the Leases in the namespace, helm's history of the release, and the
files under HOME, the state dir, the app checkout (and the config cache, unless the case reads it; those
cases then prove with a good run that the cache still works).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from bed import HELMS, KUBE_TOKEN, NS, Bed, history, publish, write_bed_config
from manual_deploy.cli import main

CORE = ("--app", "ingest-core")
APPLY = ("--config", "{config}", "apply", "--env", "prod")
GOOD_APPLY = (*APPLY, *CORE, "--tag", "good2", "--yes")


@dataclass
class World:
    bed: Bed
    app: object  # AppRepo
    cache: Path
    state: Path
    root: Path


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    error: tuple[str, ...]  # key words of the `error:` line
    next: tuple[str, ...]  # key words of the `next:` line
    setup: Callable[[World, Path, pytest.MonkeyPatch], None] | None = None
    cache: bool = False  # reads the config cache: a good run must still work afterwards
    xfail: str | None = None
    absent: tuple[str, ...] = field(default=())  # files that must not exist afterwards ({tmp} allowed)


# --- setups ------------------------------------------------------------------------------------------


def write(name: str, content: bytes | str) -> Callable:
    def setup(world: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def make_dir(name: str) -> Callable:
    def setup(world: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
        (tmp / name).mkdir()

    return setup


def kubeconfig_env(value: str) -> Callable:
    def setup(world: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
        (tmp / "kubedir").mkdir()
        mp.setenv("KUBECONFIG", value.format(tmp=tmp))

    return setup


def config_with(old: str, new: str) -> Callable:
    """The bed's config with one line changed, written to {tmp}/bad.yaml."""

    def setup(world: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
        text = world.bed.config.read_text()
        assert old in text
        (tmp / "bad.yaml").write_text(text.replace(old, new, 1))

    return setup


def replicas_line(branch: str, line: str | None) -> Callable:
    """A deploy-config branch whose config/replicas/environment_prod sets INGEST_CORE_REPLICAS by `line` (None: not at all)."""

    def setup(world: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
        repo = world.bed.deploy_repo
        relpath = "config/replicas/environment_prod"
        lines = [l for l in repo.show(relpath).splitlines() if not l.startswith("INGEST_CORE_REPLICAS=")]
        if line is not None:
            lines.insert(lines.index("set +a"), line.format(tmp=tmp))
        repo.commit_file(relpath, "\n".join(lines) + "\n", f"bad replicas: {branch}", branch=branch)

    return setup


KUBECONFIG_NO_CONTEXT = """apiVersion: v1
kind: Config
clusters: [{name: other, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: other, user: {token: x}}]
contexts: [{name: other, context: {cluster: other, user: other}}]
current-context: other
"""
KUBECONFIG_NO_SERVER = """apiVersion: v1
kind: Config
clusters: [{name: prod, cluster: {insecure-skip-tls-verify: true}}]
users: [{name: prod, user: {token: x}}]
contexts: [{name: ingest-eks-prod, context: {cluster: prod, user: prod, namespace: prod-environment}}]
current-context: ingest-eks-prod
"""


# --- the cases ----------------------------------------------------------------------------------------

CASES = [
    # environments and apps
    Case("apply-env-unknown", (*APPLY[:-1], "qa", *CORE, "--tag", "good2"), 2, ("unknown environment", "'qa'"), ("configured environments", "prod")),
    Case("apply-env-ill-formed", (*APPLY[:-1], "Prod!", *CORE, "--tag", "good2"), 2, ("invalid environment name", "Prod!"), ("must match",)),
    Case("apply-app-unknown", (*APPLY, "--app", "nope", "--tag", "good2"), 2, ("unknown app", "'nope'"), ("configured apps", "ingest-core")),
    Case("apply-app-path", (*APPLY, "--app", "../x", "--tag", "good2"), 2, ("invalid app name", "../x"), ("must match",)),
    Case("tag-env-unknown", ("--config", "{config}", "tag", "--env", "qa"), 2, ("unknown environment", "'qa'"), ("configured environments",)),
    Case("tag-app-unknown", ("--config", "{config}", "tag", "--app", "nope"), 2, ("unknown app", "'nope'"), ("configured apps",)),
    Case("tag-not-a-repo", ("--config", "{config}", "tag", "--repo", "{tmp}"), 2, ("not a git repository",), ("--repo",)),
    Case("wait-image-app-unknown", ("--config", "{config}", "wait-image", "--app", "nope", "--tag", "x1"), 2, ("unknown app", "'nope'"), ("configured apps",)),
    Case("status-env-unknown", ("--config", "{config}", "status", "--env", "qa"), 2, ("unknown environment", "'qa'"), ("configured environments",)),
    Case("status-app-unknown", ("--config", "{config}", "status", "--env", "prod", "--app", "nope"), 2, ("unknown app", "'nope'"), ("configured apps",)),
    Case("history-env-unknown", ("--config", "{config}", "history", "--env", "qa"), 2, ("unknown environment", "'qa'"), ("configured environments",)),
    Case("gitlab-sync-env-unknown", ("--config", "{config}", "gitlab-sync", "--env", "qa"), 2, ("unknown environment", "'qa'"), ("configured environments",)),
    Case("gitlab-sync-app-bad", ("--config", "{config}", "gitlab-sync", "--app", "../core"), 2, ("invalid app name",), ("must match",)),
    Case("rollback-app-unknown", ("--config", "{config}", "rollback", "--env", "prod", "--app", "nope", "--yes"), 2, ("unknown app", "'nope'"), ("configured apps",)),
    Case("promote-env-unknown", ("--config", "{config}", "promote", "--from", "qa", "--to", "prod", *CORE, "--yes"), 2, ("unknown environment", "'qa'"), ("configured environments",)),
    Case("promote-same-env", ("--config", "{config}", "promote", "--from", "prod", "--to", "prod", *CORE, "--yes"), 2, ("--from", "--to", "prod"), ("--from staging --to prod",)),
    Case("deploy-env-unknown", ("--config", "{config}", "deploy", "--env", "qa", "--yes"), 2, ("unknown environment", "'qa'"), ("configured environments",)),
    # tags, commits, remotes
    Case("apply-tag-dotdot", (*APPLY, *CORE, "--tag", "bad..tag"), 2, ("invalid tag", "bad..tag"), ("must match",)),
    Case("apply-tag-dash", (*APPLY, *CORE, "--tag", "-rf"), 2, ("invalid tag", "-rf"), ("must match",)),
    Case("apply-tag-too-long", (*APPLY, *CORE, "--tag", "a" * 200), 2, ("invalid tag", "aaaa"), ("must match",)),
    Case("wait-image-start-build-no-token", ("--config", "{config}", "wait-image", *CORE, "--tag", "never-built1", "--start-build"), 3,
         ("--start-build needs QUAY_TOKEN", "repo:admin"), ("export QUAY_TOKEN", "--tag never-built1 --start-build")),
    Case("wait-image-tag-dotdot", ("--config", "{config}", "wait-image", *CORE, "--tag", "bad..tag"), 2, ("invalid tag", "bad..tag"), ("must match",)),
    Case("tag-commit-unknown", ("--config", "{config}", "tag", "--commit", "deadbeef"), 2, ("unknown commit", "deadbeef"), ("--commit", "git log")),
    Case("tag-commit-range", ("--config", "{config}", "tag", "--commit", "HEAD..master"), 2, ("invalid git revision", "HEAD..master"), ("must match",)),
    Case("tag-remote-ill-formed", ("--config", "{config}", "tag", "--remote", "x;y"), 2, ("invalid remote name", "x;y"), ("must match",)),
    Case("tag-remote-unknown", ("--config", "{config}", "tag", "--remote", "upstream"), 2, ("remote 'upstream' is not configured",), ("configured remotes", "origin")),
    # deploy-config refs
    Case("apply-config-ref-missing", (*GOOD_APPLY, "--config-ref", "no-such-branch"), 2, ("no-such-branch", "ingest-kube-deployment"), ("--config-ref", "ls-remote"), cache=True),
    Case("apply-config-ref-missing-sha", (*GOOD_APPLY, "--config-ref", "deadbeef"), 2, ("deadbeef", "ingest-kube-deployment"), ("--config-ref",), cache=True),
    Case("apply-config-ref-option", (*GOOD_APPLY, "--config-ref", "--upload-pack=x"), 2, ("invalid git revision", "--upload-pack=x"), ("must match",)),
    Case("apply-config-ref-range", (*GOOD_APPLY, "--config-ref", "a..b"), 2, ("invalid git revision", "a..b"), ("must match",)),
    Case("deploy-config-ref-range", ("--config", "{config}", "deploy", "--env", "prod", "--yes", "--config-ref", "a..b"), 2, ("invalid git revision", "a..b"), ("must match",)),
    # images
    Case("apply-image-garbage", (*APPLY, *CORE, "--image", "not-an-image", "--yes"), 2, ("invalid --image", "not-an-image"), ("ebi-ait/ingest-core:<tag>",)),
    Case("apply-image-other-repo", (*APPLY, *CORE, "--image", "other/repo:tag", "--yes"), 2, ("other/repo:tag", "not an image of ingest-core"), ("--tag",)),
    Case("apply-image-short-digest", (*APPLY, *CORE, "--image", "repo:tag@sha256:short", "--yes"), 2, ("invalid --image", "sha256:short"), ("sha256",)),
    Case("apply-image-and-tag", (*APPLY, *CORE, "--image", "{host}/ebi-ait/ingest-core:good2", "--tag", "good2", "--yes"), 2, ("--image", "--tag", "not both"), ("--image REF", "--tag TAG")),
    # durations
    Case("apply-timeout-unit", (*GOOD_APPLY, "--timeout", "10x"), 2, ("invalid --timeout", "10x"), ("90s", "10m")),
    Case("apply-grace-negative", (*GOOD_APPLY, "--grace", "-5s"), 2, ("invalid --grace", "-5s"), ("90s", "10m")),
    Case("apply-timeout-zero", (*GOOD_APPLY, "--timeout", "0s"), 2, ("invalid --timeout", "0s", "more than zero"), ("90s", "10m")),
    Case("wait-image-no-build-timeout", ("--config", "{config}", "wait-image", *CORE, "--tag", "good2", "--no-build-timeout", "abc"), 2, ("invalid --no-build-timeout", "abc"), ("90s",)),
    Case("wait-image-timeout", ("--config", "{config}", "wait-image", *CORE, "--tag", "good2", "--timeout", "10x"), 2, ("invalid --timeout", "10x"), ("90s",)),
    Case("rollback-timeout", ("--config", "{config}", "rollback", "--env", "prod", *CORE, "--yes", "--timeout", "soon"), 2, ("invalid --timeout", "soon"), ("90s",)),
    Case("promote-grace", ("--config", "{config}", "promote", "--from", "staging", "--to", "prod", *CORE, "--yes", "--grace", "1y"), 2, ("invalid --grace", "1y"), ("90s",)),
    Case("deploy-image-timeout", ("--config", "{config}", "deploy", "--env", "prod", "--yes", "--image-timeout", "0"), 2, ("invalid --image-timeout", "more than zero"), ("90s",)),
    # replicas
    Case("apply-replicas-negative", (*GOOD_APPLY, "--replicas", "-1"), 2, ("--replicas", "-1"), ("--replicas N", "0 or more")),
    Case("apply-replicas-word", (*GOOD_APPLY, "--replicas", "abc"), 2, ("--replicas", "abc", "integer"), ("--help",)),
    Case("deploy-replicas-negative", ("--config", "{config}", "deploy", "--env", "prod", "--yes", "--replicas", "-1"), 2, ("--replicas", "-1"), ("0 or more",)),
    # revisions
    Case("rollback-revision-zero", ("--config", "{config}", "rollback", "--env", "prod", *CORE, "--yes", "--revision", "0"), 2, ("--revision", "0"), ("helm history", "1 or more")),
    Case("rollback-revision-negative", ("--config", "{config}", "rollback", "--env", "prod", *CORE, "--yes", "--revision", "-2"), 2, ("--revision", "-2"), ("1 or more",)),
    Case("rollback-revision-word", ("--config", "{config}", "rollback", "--env", "prod", *CORE, "--yes", "--revision", "abc"), 2, ("--revision", "abc", "integer"), ("--help",)),
    Case("rollback-revision-not-in-history", ("--config", "{config}", "rollback", "--env", "prod", *CORE, "--yes", "--revision", "99"), 3, ("revision 99", "not in the release history", "1, 2"), ("--revision N", "history")),
    Case("history-limit-zero", ("--config", "{config}", "history", "--limit", "0"), 2, ("--limit", "0"), ("--help",)),
    # output format and the command line itself
    Case("output-yaml", ("--config", "{config}", "-o", "yaml", "status", "--env", "prod"), 2, ("yaml", "text", "json"), ("--help",)),
    Case("output-yaml-after-command", ("--config", "{config}", "status", "--env", "prod", "-o", "yaml"), 2, ("yaml", "text", "json"), ("--help",)),
    Case("unknown-option", ("--config", "{config}", "apply", "--env", "prod", "--frobnicate"), 2, ("No such option", "--frobnicate"), ("manual-deploy apply --help",)),
    Case("unknown-command", ("--config", "{config}", "aply", "--env", "prod"), 2, ("No such command", "aply"), ("--help",)),
    Case("missing-env", ("--config", "{config}", "apply", *CORE), 2, ("Missing option", "--env"), ("manual-deploy apply --help",)),
    Case("post-check-unclosed-quote", (*GOOD_APPLY, "--post-check", 'curl "http://x'), 2, ("invalid --post-check", "quotation"), ("--post-check",)),
    # config files
    Case("config-missing", ("--config", "/nope.yaml", "status", "--env", "prod"), 2, ("config file not found", "/nope.yaml"), ("--config PATH",)),
    Case("config-directory", ("--config", "{tmp}/confdir", "status", "--env", "prod"), 2, ("cannot read config file", "confdir", "directory"), ("--config PATH",), setup=make_dir("confdir")),
    Case("config-not-utf8", ("--config", "{tmp}/bad.yaml", "status", "--env", "prod"), 2, ("config", "bad.yaml", "UTF-8"), ("save", "UTF-8"), setup=write("bad.yaml", b"\xff\xfe\x00bad")),
    Case("config-not-yaml", ("--config", "{tmp}/bad.yaml", "status", "--env", "prod"), 2, ("bad.yaml", "not valid YAML", "line", "expected ',' or ']'"), ("indentation",), setup=write("bad.yaml", "a: [b")),
    Case("config-list", ("--config", "{tmp}/bad.yaml", "status", "--env", "prod"), 2, ("bad.yaml", "must be a YAML mapping"), ("configs/ingest.yaml",), setup=write("bad.yaml", "- registry\n- apps\n")),
    Case("config-unknown-key", ("--config", "{tmp}/bad.yaml", "status", "--env", "prod"), 2, ("bad.yaml", "registry.nmespace", "unknown key"), ("fix the file",),
         setup=config_with("namespace: ebi-ait", "nmespace: ebi-ait")),
    Case("config-wrong-bool", ("--config", "{tmp}/bad.yaml", "status", "--env", "prod"), 2, ("environments.prod.confirm", "boolean"), ("fix the file",),
         setup=config_with("confirm: true", "confirm: sometimes")),
    Case("config-apps-number", ("--config", "{tmp}/bad.yaml", "status", "--env", "prod"), 2, ("apps", "dictionary"), ("fix the file",),
         setup=write("bad.yaml", "registry: {url: 'http://r', api_url: 'http://r/api/v1', namespace: n}\n"
                                 "deployment_repo: {url: 'http://d'}\n"
                                 "environments: {prod: {kube_context: c, namespace: n, config_branch: master, source_branch: master}}\n"
                                 "apps: 3\n")),
    Case("config-env-var-directory", ("status", "--env", "prod"), 2, ("cannot read config file", "confdir"), ("MANUAL_DEPLOY_CONFIG",),
         setup=lambda w, tmp, mp: ((tmp / "confdir").mkdir(), mp.setenv("MANUAL_DEPLOY_CONFIG", str(tmp / "confdir")))),
    # kubeconfigs
    Case("kubeconfig-garbage", (*GOOD_APPLY, "--kubeconfig", "{tmp}/kubeconfig"), 3, ("kubeconfig", "{tmp}/kubeconfig"), ("kubeconfig",),
         setup=write("kubeconfig", b"\xff\xfe\x00\x80garbage\x00")),
    Case("kubeconfig-not-yaml", (*GOOD_APPLY, "--kubeconfig", "{tmp}/kubeconfig"), 3, ("cannot read kubeconfig", "{tmp}/kubeconfig"), ("kubeconfig",),
         setup=write("kubeconfig", "clusters: [oops\n")),
    Case("kubeconfig-a-list", (*GOOD_APPLY, "--kubeconfig", "{tmp}/kubeconfig"), 3, ("kubeconfig", "{tmp}/kubeconfig"), ("kubeconfig",),
         setup=write("kubeconfig", "- just\n- a list\n")),
    Case("kubeconfig-without-context", (*GOOD_APPLY, "--kubeconfig", "{tmp}/kubeconfig"), 3, ("ingest-eks-prod", "is not in", "other"), ("update-kubeconfig",),
         setup=write("kubeconfig", KUBECONFIG_NO_CONTEXT)),
    Case("kubeconfig-cluster-without-server", (*GOOD_APPLY, "--kubeconfig", "{tmp}/kubeconfig"), 3, ("ingest-eks-prod", "no server"), ("kubeconfig",),
         setup=write("kubeconfig", KUBECONFIG_NO_SERVER)),
    Case("kubeconfig-path-missing", (*GOOD_APPLY, "--kubeconfig", "{tmp}/nope"), 3, ("no kubeconfig found", "{tmp}/nope"), ("update-kubeconfig",)),
    Case("kubeconfig-env-directory", GOOD_APPLY, 3, ("no kubeconfig found", "kubedir"), ("update-kubeconfig",), setup=kubeconfig_env("{tmp}/kubedir")),
    Case("kube-context-unknown", (*GOOD_APPLY, "--kube-context", "nope"), 3, ("'nope'", "is not in"), ("update-kubeconfig",)),
    Case("status-kubeconfig-missing", ("--config", "{config}", "status", "--env", "prod", "--kubeconfig", "{tmp}/nope"), 3, ("no kubeconfig found",), ("update-kubeconfig",)),
    Case("rollback-kubeconfig-missing", ("--config", "{config}", "rollback", "--env", "prod", *CORE, "--yes", "--kubeconfig", "{tmp}/nope"), 3, ("no kubeconfig found",), ("update-kubeconfig",)),
    # the deploy-config repo's replicas file: parsed, never run
    Case("replicas-command-substitution", (*GOOD_APPLY, "--config-ref", "bad-subst"), 3, ("INGEST_CORE_REPLICAS", "command substitution"), ("--replicas N",),
         setup=replicas_line("bad-subst", "INGEST_CORE_REPLICAS=$(touch {tmp}/pwned-subst; curl evil)"), cache=True, absent=("{tmp}/pwned-subst",)),
    Case("replicas-backticks", (*GOOD_APPLY, "--config-ref", "bad-backtick"), 3, ("INGEST_CORE_REPLICAS", "command substitution"), ("--replicas N",),
         setup=replicas_line("bad-backtick", "INGEST_CORE_REPLICAS=`touch {tmp}/pwned-tick`"), cache=True, absent=("{tmp}/pwned-tick",)),
    Case("replicas-missing", (*GOOD_APPLY, "--config-ref", "bad-missing"), 3, ("INGEST_CORE_REPLICAS is not set", "environment_prod"), ("--replicas N",),
         setup=replicas_line("bad-missing", None), cache=True),
    Case("replicas-word", (*GOOD_APPLY, "--config-ref", "bad-word"), 3, ("INGEST_CORE_REPLICAS='many'", "whole number"), ("--replicas N",),
         setup=replicas_line("bad-word", "INGEST_CORE_REPLICAS=many"), cache=True),
    Case("replicas-negative", (*GOOD_APPLY, "--config-ref", "bad-negative"), 3, ("INGEST_CORE_REPLICAS='-3'", "whole number"), ("--replicas N",),
         setup=replicas_line("bad-negative", "INGEST_CORE_REPLICAS=-3"), cache=True),
]


# --- the bed, once for the module ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, registry, deploy_repo):
    from manual_deploy_sandbox.gitrepos import make_app_repo
    from manual_deploy_sandbox.kube import KubeEmulator
    from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

    root = tmp_path_factory.mktemp("world")
    kube = KubeEmulator(token=KUBE_TOKEN, pod_start_delay=0.05, progress_deadline=2.0).start()
    try:
        kubeconfig = write_kubeconfig(root / "kubeconfig", ingest_contexts(kube.url), token=KUBE_TOKEN)
        config = write_bed_config(root / "config.yaml", registry_url=registry.url, deploy_url=deploy_repo.url, helm=HELMS["helm3"])
        bed = Bed(config=config, kubeconfig=kubeconfig, kube=kube, registry=registry, deploy_repo=deploy_repo, helm=HELMS["helm3"])
        world = World(bed=bed, app=make_app_repo(root / "app"), cache=root / "cache", state=root / "state", root=root)
        with pytest.MonkeyPatch.context() as mp:
            _environment(world, mp, root / "home")
            for tag in ("good1", "good2"):  # revisions 1 and 2 of ingest-core in prod
                publish(bed, "ingest-core", tag)
                assert main(["--config", str(config), "apply", "--env", "prod", *CORE, "--tag", tag, "--yes"]) == 0
        assert [r["revision"] for r in history(bed, "ingest-core")] == [1, 2]
        yield world
    finally:
        kube.stop()


def _environment(world: World, mp: pytest.MonkeyPatch, home: Path) -> None:
    home.mkdir(exist_ok=True)
    mp.setenv("HOME", str(home))
    mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
    mp.setenv("MANUAL_DEPLOY_CACHE_DIR", str(world.cache))
    mp.setenv("MANUAL_DEPLOY_STATE_DIR", str(world.state))
    mp.setenv("KUBECONFIG", str(world.bed.kubeconfig))
    for name in ("MANUAL_DEPLOY_CONFIG", "MANUAL_DEPLOY_WEBHOOK_URL", "QUAY_TOKEN", "QUAY_USERNAME", "QUAY_PASSWORD"):
        mp.delenv(name, raising=False)


def _files(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if here / d not in skip]
            for name in filenames:
                path = here / name
                if path.is_file():
                    stat = path.stat()
                    found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def snapshot(world: World, tmp: Path, *, with_cache: bool) -> dict:
    """Everything a bad input must leave alone."""
    _, _, coordination = world.bed.apps_api()
    checkout = world.app.checkout
    roots = [Path(os.environ["HOME"]), world.state, checkout, tmp] + ([world.cache] if with_cache else [])
    skip = (checkout / ".git",)  # git's own bookkeeping (FETCH_HEAD, index stat) may change; ours may not
    return {
        "remote tags": world.app.remote_git("for-each-ref", "refs/tags"),
        "local tags": world.app.git("for-each-ref", "refs/tags"),
        "leases": [l.metadata.name for l in coordination.list_namespaced_lease(NS).items],
        "helm history": [(r["revision"], r["status"]) for r in history(world.bed, "ingest-core")],
        "files": _files(*roots, skip=skip),
        "recorded state": _files(checkout / ".git" / "manual-deploy"),
    }


def cluster_writes_since(world: World, mark: dict) -> list[str]:
    """Requests after `mark` (a journal entry) that could change the cluster, leaving out Leases.

    A refusal found while planning may come after the locks were taken (with --yes they are taken
    while the plan reads the releases) and released again; that no Lease is left is checked apart.
    """
    journal = list(world.bed.kube.requests)
    at = next(i for i in range(len(journal) - 1, -1, -1) if journal[i] is mark)
    return [f"{r['method']} {r['path']}" for r in journal[at + 1:]
            if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and "/leases" not in r["path"]]


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


def test_the_wall_has_enough_cases():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {next(a for a in c.argv if a in ("tag", "wait-image", "apply", "deploy", "promote", "rollback", "status", "history"))
                for c in CASES if set(c.argv) & {"tag", "wait-image", "apply", "deploy", "promote", "rollback", "status", "history"}}
    assert commands == {"tag", "wait-image", "apply", "deploy", "promote", "rollback", "status", "history"}


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, world: World, cli, tmp_path, monkeypatch):
    _environment(world, monkeypatch, Path(os.environ["HOME"]))
    monkeypatch.chdir(world.app.checkout)
    if case.setup:
        case.setup(world, tmp_path, monkeypatch)
    fill = {"config": str(world.bed.config), "tmp": str(tmp_path), "host": world.bed.registry.host}
    argv = [arg.format(**fill) for arg in case.argv]
    before = snapshot(world, tmp_path, with_cache=not case.cache)
    mark = world.bed.kube.requests[-1]

    result = cli(*argv)

    err = result.stderr
    assert result.code == case.code, err
    for bad in ("Traceback", "internal error", "ERROR:root"):
        assert bad not in err, err
    errors = [line for line in err.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, err
    lines = err.splitlines()
    at = lines.index(errors[0])
    assert at + 1 < len(lines) and lines[at + 1].startswith("  next: "), err
    for word in case.error:
        assert word.format(**fill) in errors[0], err
    for word in case.next:
        assert word.format(**fill) in lines[at + 1], err
    assert result.stdout == "", result.stdout
    for path in case.absent:
        assert not Path(path.format(**fill)).exists(), f"{path} was created: the replicas file was run, not parsed"

    assert snapshot(world, tmp_path, with_cache=not case.cache) == before
    assert cluster_writes_since(world, mark) == []
    if case.cache:  # the config cache still works: a good run after the bad one
        good = cli(*[arg.format(**fill) for arg in GOOD_APPLY], "--dry-run")
        assert good.code == 0, good.stderr
