"""`manual-deploy status` on the bed: real helm 3, real registry and config repo, emulated cluster."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

from bed import HELMS, KUBE_TOKEN, NS, apply, publish, release_secret_status, write_bed_config


def _status(cli, bed, *args, config=None):
    return cli("--config", config or bed.config, "status", *args)


def _rows(stdout: str) -> dict[str, str]:
    """{app: its table line} of the single-env table."""
    names = ("ingest-core", "ingest-exporter", "ingest-archiver", "ontology")
    return {word: line for line in stdout.splitlines() for word in line.split()[:2] if word in names}


def _set_image(bed, deployment: str, image: str) -> None:
    """What `kubectl set image` does: patch the Deployment behind helm's back."""
    apps_api, _, _ = bed.apps_api()
    current = apps_api.read_namespaced_deployment(deployment, NS)
    name = current.spec.template.spec.containers[0].name
    apps_api.patch_namespaced_deployment(
        deployment, NS, {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    )


def _micro(stamp: datetime) -> str:
    """A MicroTime as the apiserver wants it: exactly 6 fractional digits, never .000000."""
    return stamp.replace(microsecond=stamp.microsecond or 1).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stage_lock(bed, app: str, *, holder: str, reason: str, started_ago: float, renewed_ago: float, image: str,
                labelled: bool = True) -> None:
    """A deploy lock as a running apply writes it (see manual_deploy.lock.DeployLock), renewed `renewed_ago` s ago."""
    from kubernetes import client

    now = datetime.now(timezone.utc)
    notes = {"reason": reason, "command": "apply", "phase": "upgrade+verify", "run-id": "0123456789ab",
             "started": (now - timedelta(seconds=started_ago)).isoformat(), "image": image}
    _, _, coordination = bed.apps_api()
    coordination.create_namespaced_lease(NS, client.V1Lease(
        metadata=client.V1ObjectMeta(name=f"manual-deploy-{app}" if labelled else f"{app}-leader",
                                     annotations={f"manual-deploy.ebi-ait/{k}": v for k, v in notes.items()},
                                     labels={"app.kubernetes.io/managed-by": "manual-deploy"} if labelled else None),
        spec=client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=30,
                                acquire_time=_micro(now - timedelta(seconds=started_ago)),
                                renew_time=_micro(now - timedelta(seconds=renewed_ago))),
    ))


def test_every_app_shown_and_image_drift_flagged(cli, bed, tmp_path):
    digest = publish(bed, "ingest-core", "st1")
    publish(bed, "ontology", "st1")
    deployed = apply(cli, bed, "--app", "ingest-core", "--app", "ontology", "--tag", "st1", "--yes", "--reason", "INC-7 hotfix")
    assert deployed.code == 0, deployed.stderr

    text = _status(cli, bed, "--env", "prod")

    assert text.code == 0, text.stderr
    lines = _rows(text.stdout)
    assert set(lines) == {"ingest-core", "ingest-exporter", "ingest-archiver", "ontology"}, text.stdout
    assert "not deployed" in lines["ingest-exporter"] and "not deployed" in lines["ingest-archiver"]
    assert "st1" in lines["ingest-core"] and digest[:19] in lines["ingest-core"] and "INC-7 hotfix" in lines["ingest-core"]
    assert "1/1" in lines["ingest-core"] and "deployed" in lines["ontology"]
    assert "⚠" not in text.stdout and "drift" not in text.stderr
    assert "config master@" in text.stdout

    data = _status(cli, bed, "--env", "prod", "-o", "json").json()
    prod = data["envs"]["prod"]
    assert set(data) == {"envs"} and prod["context"] == "ingest-eks-prod" and prod["namespace"] == NS
    assert set(prod["apps"]) == {"ingest-core", "ingest-exporter", "ingest-archiver", "ontology"}
    core = prod["apps"]["ingest-core"]
    assert core["deployed"] is True and core["revision"] == 1 and core["status"] == "deployed"
    assert core["tag"] == "st1" and core["digest"] == digest and core["repo"] == f"{bed.registry.host}/ebi-ait/ingest-core"
    assert core["image"] == core["live_image"] == f"{bed.registry.host}/ebi-ait/ingest-core:st1@{digest}"
    assert (core["ready_replicas"], core["desired_replicas"], core["config_replicas"]) == (1, 1, 1)
    assert core["reason"] == "INC-7 hotfix" and core["deployed_by"].count("@") == 1 and core["deployed_at"].endswith("Z")
    assert core["config_sha"] == bed.deploy_repo.head("master")[:8] and prod["config"]["sha"] == bed.deploy_repo.head("master")
    assert core["drift"] == []
    assert prod["apps"]["ontology"]["tag"] == "st1" and prod["apps"]["ontology"]["drift"] == []  # bare-tag chart: tag compared
    assert prod["apps"]["ingest-exporter"] == {**prod["apps"]["ingest-exporter"], "deployed": False, "status": "not deployed", "revision": None}

    _set_image(bed, "ingest-core", f"{bed.registry.host}/ebi-ait/ingest-core:sneaky")
    _set_image(bed, "ontology", "quay.io/ebi-ait/ontology:other")
    drifted = _status(cli, bed, "--env", "prod")
    assert drifted.code == 0, drifted.stderr
    assert "⚠ ingest-core" in drifted.stdout and "runs sneaky" in drifted.stdout and "⚠ ontology" in drifted.stdout
    assert "kubectl set image" in drifted.stderr and "helm rollback ingest-core 1" in drifted.stderr
    apps = _status(cli, bed, "--env", "prod", "-o", "json").json()["envs"]["prod"]["apps"]
    assert [d["kind"] for d in apps["ingest-core"]["drift"]] == ["image"]
    assert apps["ingest-core"]["live_image"].endswith(":sneaky") and [d["kind"] for d in apps["ontology"]["drift"]] == ["image"]
    assert apps["ingest-exporter"]["drift"] == []

    # a deploy-config repo that cannot be fetched is a warning; the rest still works
    unreachable_repo = write_bed_config(
        tmp_path / "norepo.yaml", registry_url=bed.registry.url, deploy_url=str(tmp_path / "no-such-repo.git"), helm=bed.helm
    )
    degraded = _status(cli, bed, "--env", "prod", "--app", "ingest-core", "-o", "json", config=unreachable_repo)
    assert degraded.code == 0, degraded.stderr
    assert "deploy config not read" in degraded.stderr and "replicas not checked" in degraded.stderr
    assert degraded.json()["envs"]["prod"]["apps"]["ingest-core"]["config_replicas"] is None
    for result in (text, drifted, degraded):
        assert KUBE_TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_replicas_drift_and_several_envs(cli, bed):
    publish(bed, "ingest-core", "rep1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "rep1", "--yes").code == 0
    sha = bed.deploy_repo.set_replicas("prod", "INGEST_CORE_REPLICAS", 3)
    try:
        result = _status(cli, bed, "--env", "prod", "--env", "staging", "--app", "ingest-core", "--app", "ingest-exporter", "-o", "json")
        text = _status(cli, bed, "--env", "prod", "--env", "staging", "--app", "ingest-core", "--app", "ingest-exporter")
    finally:
        bed.deploy_repo.set_replicas("prod", "INGEST_CORE_REPLICAS", 1)

    assert result.code == 0, result.stderr
    envs = result.json()["envs"]
    assert set(envs) == {"prod", "staging"} and envs["staging"]["context"] == "ingest-eks-staging"
    core = envs["prod"]["apps"]["ingest-core"]
    assert (core["config_replicas"], core["desired_replicas"]) == (3, 1)
    assert [d["kind"] for d in core["drift"]] == ["replicas"] and envs["prod"]["config"]["sha"] == sha
    assert "config repo changed" in core["drift"][0]["message"] and "--tag rep1" in core["drift"][0]["hint"]
    assert envs["staging"]["apps"]["ingest-core"]["status"] == "not deployed"
    assert set(envs["prod"]["apps"]) == set(envs["staging"]["apps"]) == {"ingest-core", "ingest-exporter"}

    assert text.code == 0, text.stderr
    header = text.stdout.split("ingest-core")[0]
    assert "prod (ingest-eks-prod)" in header and "staging (ingest-eks-staging)" in header and "APP" in header
    assert "⚠ replicas: config 3 ≠ 1" in text.stdout and "r1 deployed" in text.stdout and "not deployed" in text.stdout


def test_a_running_deploy_and_a_dead_one_are_shown(cli, bed):
    """alice's apply of ingest-core is at work (heartbeat now); bob's of ontology stopped renewing 60 s ago
    (its 30 s lock expired) and left the release pending-upgrade; one of ours on ingest-archiver renewed just
    now but its process is gone: status says who, why, where, since when, and that the next deploy recovers it."""
    import subprocess

    from kubernetes import config as kconfig

    from manual_deploy.lock import holder_identity

    for app in ("ingest-core", "ontology"):
        publish(bed, app, "lk1")
    assert apply(cli, bed, "--app", "ingest-core", "--app", "ontology", "--tag", "lk1", "--yes").code == 0
    api = kconfig.new_client_from_config(config_file=str(bed.kubeconfig), context="ingest-eks-prod", persist_config=False)
    release_secret_status(api, NS, "ontology", 1, "pending-upgrade")
    core = f"{bed.registry.host}/ebi-ait/ingest-core"
    _stage_lock(bed, "ingest-core", holder="alice@laptop#41", reason="INC-7", started_ago=150, renewed_ago=0,
                image=f"{core}:lk1 → {core}:lk2")
    _stage_lock(bed, "ontology", holder="bob@desk#7", reason="INC-8", started_ago=300, renewed_ago=60, image="lk1 → lk2")
    _stage_lock(bed, "ingest-exporter", holder="kube-controller", reason="", started_ago=1, renewed_ago=0, image="",
                labelled=False)  # someone else's Lease in the namespace: not a deploy lock
    gone = subprocess.Popen(["true"])  # a run of this user@host whose process has ended
    gone.wait()
    ours = f"{holder_identity()}#{gone.pid}"
    _stage_lock(bed, "ingest-archiver", holder=ours, reason="INC-9", started_ago=20, renewed_ago=1, image="")
    bed.kube.requests.clear()

    text = _status(cli, bed, "--env", "prod")

    assert text.code == 0, text.stderr
    assert re.search(
        rf"^⟳ prod/ingest-core: being deployed by alice@laptop#41 \(INC-7\), apply in phase upgrade\+verify for 2 min, "
        rf"heartbeat \d+ s ago: {re.escape(core)}:lk1 → {re.escape(core)}:lk2$", text.stdout, re.M), text.stdout
    assert re.search(
        r"^✗ prod/ontology: bob@desk#7's apply \(INC-8\) stopped answering [6-9]\d s ago in phase upgrade\+verify; "
        r"release ontology is pending-upgrade \(revision 1\); the next deploy recovers it \(no flag needed\)$",
        text.stdout, re.M), text.stdout
    assert re.search(rf"^✗ prod/ingest-archiver: {re.escape(ours)}'s apply \(INC-9\) died \d s ago in phase upgrade\+verify; "
                     r"the next deploy recovers it \(no flag needed\)$", text.stdout, re.M), text.stdout
    assert "ingest-exporter:" not in text.stdout and "kube-controller" not in text.stdout
    rows = _rows(text.stdout)
    assert "⟳ deployed" in rows["ingest-core"] and "✗ pending-upgrade" in rows["ontology"], text.stdout
    assert "✗ not deployed" in rows["ingest-archiver"]
    assert "⟳" not in rows["ingest-exporter"] and "✗" not in rows["ingest-exporter"]
    assert "deploy locks not read" not in text.stderr
    leases = [r for r in bed.kube.requests if "/leases" in r["path"]]
    assert [(r["method"], r["path"]) for r in leases] == [("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")]

    apps = _status(cli, bed, "--env", "prod", "-o", "json").json()["envs"]["prod"]["apps"]
    live, dead = apps["ingest-core"]["lock"], apps["ontology"]["lock"]
    assert {k: v for k, v in live.items() if k not in ("started", "heartbeat_age_s")} == {
        "holder": "alice@laptop#41", "reason": "INC-7", "command": "apply", "phase": "upgrade+verify", "state": "live",
        "image": f"{core}:lk1 → {core}:lk2"}
    assert 0 <= live["heartbeat_age_s"] < 15 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", live["started"])
    assert (dead["holder"], dead["state"], dead["reason"], dead["image"]) == ("bob@desk#7", "expired", "INC-8", "lk1 → lk2")
    assert 60 <= dead["heartbeat_age_s"] < 100 and apps["ontology"]["status"] == "pending-upgrade"
    assert (apps["ingest-archiver"]["lock"]["holder"], apps["ingest-archiver"]["lock"]["state"]) == (ours, "dead")
    assert apps["ingest-exporter"]["lock"] is None

    several = _status(cli, bed, "--env", "prod", "--env", "staging", "--app", "ingest-core")
    assert several.code == 0, several.stderr
    assert "⟳ r1 deployed" in several.stdout and "⟳ prod/ingest-core: being deployed by alice@laptop#41" in several.stdout
    assert "staging/ingest-core" not in several.stdout  # the lock is prod's namespace's


def test_locks_that_cannot_be_read_are_a_warning(cli, bed):
    """A role without `list` on leases still sees what runs; one line says the locks were not read."""
    _stage_lock(bed, "ingest-core", holder="alice@laptop#41", reason="INC-7", started_ago=10, renewed_ago=0, image="a → b")
    bed.kube.deny("list", "leases", group="coordination.k8s.io", namespace=NS)

    text = _status(cli, bed, "--env", "prod")

    assert text.code == 0, text.stderr
    assert set(_rows(text.stdout)) == {"ingest-core", "ingest-exporter", "ingest-archiver", "ontology"}, text.stdout
    assert "alice" not in text.stdout and "⟳" not in text.stdout
    warned = [line for line in text.stderr.splitlines() if "deploy locks not read" in line]
    assert len(warned) == 1, text.stderr
    assert warned[0].startswith("warning: prod: deploy locks not read, so a deploy in progress is not shown: ")
    assert 'cannot list resource "leases"' in warned[0] and "(HTTP 403)" in warned[0], text.stderr

    data = _status(cli, bed, "--env", "prod", "-o", "json")
    assert data.code == 0 and data.json()["envs"]["prod"]["apps"]["ingest-core"]["lock"] is None
    assert any("deploy locks not read" in w for w in data.json()["envs"]["prod"]["warnings"])


def test_unknown_env_missing_context_and_unreachable_cluster(cli, bed, tmp_path):
    from manual_deploy_sandbox.kube.kubeconfig import write_kubeconfig

    unknown = _status(cli, bed, "--env", "qa")
    assert unknown.code == 2 and "unknown environment 'qa'" in unknown.stderr

    unknown_app = _status(cli, bed, "--env", "prod", "--app", "ingest-nope")
    assert unknown_app.code == 2 and "unknown app" in unknown_app.stderr

    dev_only = write_kubeconfig(tmp_path / "dev-only", {"ingest-eks-dev": (bed.kube.url, "dev-environment")})
    missing = _status(cli, bed, "--env", "dev", "--env", "prod", "--kubeconfig", dev_only, "-o", "json")
    assert missing.code == 3, missing.stderr
    assert "'ingest-eks-prod' is not in" in missing.stderr and missing.json()["exit_code"] == 3
    assert bed.kube.requests == []  # refused before anything talked to a cluster

    half = write_kubeconfig(tmp_path / "half", {"ingest-eks-prod": (bed.kube.url, NS), "ingest-eks-dev": ("http://127.0.0.1:9", "dev-environment")},
                            token=KUBE_TOKEN)
    partial = _status(cli, bed, "--env", "prod", "--env", "dev", "--app", "ingest-core", "--kubeconfig", half)
    assert partial.code == 1, partial.stderr  # one env unreadable: the others are still shown
    assert "dev: cluster ingest-eks-dev (http://127.0.0.1:9) is unreachable" in partial.stderr
    assert "✗ cluster not read" in partial.stdout and "not deployed" in partial.stdout

    bed.kube.stop()
    down = _status(cli, bed, "--env", "prod")
    assert down.code == 1, down.stderr
    assert "unreachable" in down.stderr and "next:" in down.stderr
    assert "Traceback" not in down.stderr and KUBE_TOKEN not in down.stdout + down.stderr


def test_helm_reads_run_concurrently(cli, tmp_path, monkeypatch):
    """Ten apps must not take ten times one app: helm calls overlap, up to a bound."""
    from manual_deploy import status
    from manual_deploy.helm import Revision
    from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

    apps = [f"ingest-app{i}" for i in range(10)]
    config = write_bed_config(tmp_path / "ten.yaml", registry_url="http://127.0.0.1:9", deploy_url="/nowhere", helm=HELMS["helm3"])
    config.write_text(config.read_text().split("apps:")[0] + "apps:\n" + "".join(f"  {a}: {{}}\n" for a in apps))
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts("http://127.0.0.1:9"))))
    in_flight, peak = 0, 0

    class SlowHelm:
        def __init__(self, *args, **kwargs):
            pass

        async def _slow(self, value):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.3)
            in_flight -= 1
            return value

        async def current_and_values(self, release, namespace):
            return await self._slow((Revision(1, "deployed", "2024-05-01T10:00:00.123456789Z", "Upgrade complete"),
                                     {"image": f"quay.io/ebi-ait/{release}:t1"}))

    monkeypatch.setattr(status, "driver_for", lambda *args, **kwargs: SlowHelm())
    monkeypatch.setattr(status, "live_deployments", lambda target, kube: {})
    monkeypatch.setattr(status, "expected_replicas", lambda config, envs, apps: {e: status.ConfigReading() for e in envs})

    result = cli("--config", config, "status", "--env", "prod", "-o", "json")

    assert result.code == 0, result.stderr
    rows = result.json()["envs"]["prod"]["apps"]
    assert set(rows) == set(apps) and rows["ingest-app3"]["description"] == "Upgrade complete"
    assert rows["ingest-app3"]["deployed_by"] is None and rows["ingest-app3"]["deployed_at"] == "2024-05-01T10:00:00Z"
    assert [d["kind"] for d in rows["ingest-app3"]["drift"]] == ["deployment"]  # a release without its Deployment
    assert 1 < peak <= status.MAX_PARALLEL_READS  # read side by side, never more than the cap at once


def test_description_and_image_parsing():
    from manual_deploy.images import ImageRef
    from manual_deploy.release.description import parse as parse_description

    def split_image(text):
        ref = ImageRef.parse(text)
        return ref.repo, ref.tag, ref.digest

    made = parse_description("manual-deploy by alice@laptop#42; reason: INC-1; fix it; image: quay.io/ebi-ait/x:t@sha256:ab; config: 0123abcd")
    assert made.by == "alice@laptop#42" and made.reason == "INC-1; fix it" and made.config_sha == "0123abcd"
    assert parse_description("manual-deploy by a@b#1; reason: -; image: x; config: 0123abcd").reason is None
    assert parse_description("Upgrade complete") is None and parse_description("Rollback to 2") is None
    assert split_image("quay.io/ebi-ait/x:t1@sha256:ff") == ("quay.io/ebi-ait/x", "t1", "sha256:ff")
    assert split_image("127.0.0.1:5000/ebi-ait/x:t1") == ("127.0.0.1:5000/ebi-ait/x", "t1", None)
    assert split_image("127.0.0.1:5000/ebi-ait/x") == ("127.0.0.1:5000/ebi-ait/x", None, None)
    assert split_image("1.0.50") == (None, "1.0.50", None)


CONSOLE_SCRIPT = """
import os, sys
class Teardown:  # its __del__ runs when the interpreter is torn down, and only then
    def __del__(self, write=os.write, open_=os.open, path=sys.argv[1]):
        write(open_(path, os.O_WRONLY | os.O_CREAT), b"torn down")
witness = Teardown()
entry, sys.argv = sys.argv[2], ["manual-deploy", *sys.argv[3:]]
from manual_deploy import cli
cli.run() if entry == "run" else sys.exit(cli.main())
"""


def _session_processes(sid: int) -> list[str]:
    """The command lines of every process still in session `sid` (what a run left behind)."""
    import os

    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _, _, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state != "Z":  # a zombie runs nothing; init reaps it
            left.append(f"{pid}: {cmdline}")
    return left


def test_the_console_script_exits_fast_but_cleanly(bed, tmp_path):
    """`manual-deploy` skips interpreter teardown at exit (0.4–0.6 s): what only teardown runs never runs
    (`main()` with a normal exit runs it: the witness works). What exit must still do, it does: the whole
    --output json result reaches a pipe, the exit code is kept, the kubernetes client's temporary
    certificate files (written from certificate-authority-data) are removed, and a deploy leaves no
    process behind (helm, the early status reads) and no lock."""
    import json
    import os
    import subprocess
    import sys

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    runs = iter(range(100))

    def console(entry: str, *args: str) -> tuple[int, str, str, bool]:
        """Run the console script's entry point as its own session: (exit code, stdout, stderr, torn down).
        What is left in the session is looked at the moment it exits, before its pipes are drained (a
        leftover holding them would otherwise only show as a slow exit), and stopped."""
        import signal
        from concurrent.futures import ThreadPoolExecutor

        witness = tmp_path / f"torn-down-{next(runs)}"
        proc = subprocess.Popen([sys.executable, "-c", CONSOLE_SCRIPT, str(witness), entry, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        with ThreadPoolExecutor(1) as pool:
            output = pool.submit(proc.communicate)
            proc.wait(timeout=180)
            left = _session_processes(proc.pid)
            if left:
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = output.result(timeout=60)
        assert left == []  # nothing it started outlives it (helm, the early status reads)
        return proc.returncode, out, err, witness.exists()

    code, out, err, torn_down = console("run", "--config", str(bed.config), "--output", "json", "status", "--env", "prod")
    assert code == 0, err
    data = json.loads(out)
    assert {"ingest-core", "ontology"} <= set(data["envs"]["prod"]["apps"])
    assert list(tmpdir.iterdir()) == []
    assert not torn_down

    code, out, _, torn_down = console("run", "--config", str(bed.config), "--output", "json", "status", "--env", "nope")
    assert code == 2
    assert json.loads(out)["exit_code"] == 2
    assert not torn_down

    assert console("main", "--version")[3]  # the control: a normal exit does tear down, and the witness sees it

    publish(bed, "ingest-core", "exit1")
    code, out, err, torn_down = console("run", "--config", str(bed.config), "--output", "json", "apply", "--env", "prod",
                                        "--app", "ingest-core", "--tag", "exit1", "--yes")
    assert code == 0, err
    assert [r["result"] for r in json.loads(out)["results"]] == ["deployed"]
    _, _, coordination = bed.apps_api()
    assert coordination.list_namespaced_lease(NS).items == []  # the deploy lock was given back
    assert list(tmpdir.iterdir()) == []
    assert not torn_down


def test_drift_is_read_from_the_apps_container_never_a_sidecar():
    """One rule for apply, promote and status: the app's container (named after the Deployment, else running the
    app's image repo) must run the release's image; a sidecar running something else is no drift, and the app's
    container running something else is, whatever the sidecar runs."""
    from manual_deploy.drift import find_drift
    from manual_deploy.live_deployment import LiveDeployment

    def deployment(name, *containers, replicas=1):
        return LiveDeployment.from_dict({"metadata": {"name": name}, "spec": {"replicas": replicas, "template": {"spec": {
            "containers": [{"name": n, "image": i} for n, i in containers]}}}})

    wanted = "quay.io/ebi-ait/core:t1@sha256:aa"
    assert find_drift(deployment("core", ("proxy", "envoy:1"), ("core", wanted)), wanted, 1) == []
    assert find_drift(deployment("core-dep", ("proxy", "envoy:1"), ("app", wanted)), wanted, 1, "quay.io/ebi-ait/core") == []
    [image] = find_drift(deployment("core", ("core", "quay.io/ebi-ait/core:sneaky"), ("proxy", wanted)), wanted, 1)
    assert (image.kind, image.live, str(image)) == ("image", "quay.io/ebi-ait/core:sneaky", "it runs quay.io/ebi-ait/core:sneaky")
    assert [str(d) for d in find_drift(deployment("core", ("core", wanted), replicas=3), wanted, 2)] == ["3 replicas instead of 2"]
    assert [str(d) for d in find_drift(None, wanted, 2)] == ["its Deployment is missing"]
    assert find_drift(deployment("ontology", ("ontology", "quay.io/ebi-ait/ontology:st1")), "st1", None) == []  # a bare-tag chart


def test_the_description_apply_writes_is_the_one_status_reads():
    from manual_deploy.release import description

    text = description.write("alice@laptop#42", "INC-1:\n  roll   forward", "quay.io/ebi-ait/x:t@sha256:ab", "0123abcd" * 5)
    assert text == "manual-deploy by alice@laptop#42; reason: INC-1: roll forward; image: quay.io/ebi-ait/x:t@sha256:ab; config: 0123abcd"
    made = description.parse(text)
    assert (made.by, made.reason, made.image, made.config_sha) == ("alice@laptop#42", "INC-1: roll forward", "quay.io/ebi-ait/x:t@sha256:ab", "0123abcd")
    assert description.from_config(text, "0123abcd" * 5) and not description.from_config(text, "fedcba98" * 5)
    assert not description.from_config("Upgrade complete; config: 0123abcd", "0123abcd" * 5)
    assert description.parse(description.write("a@b#1", "  ", "x", "0123abcd")).reason is None
    assert description.deployed_by(text) == "alice@laptop" and description.deployed_by("Rollback to 2") == "Rollback to 2"
