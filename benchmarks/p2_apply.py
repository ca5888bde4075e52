"""P2 apply overhead: `manual-deploy apply` for one app vs the raw `git clone` + `helm upgrade --install --wait`.

Both sides deploy ingest-core to the same emulated cluster, alternately. "changed": every run switches
between two published tags, so every run really changes the image (on both sides). "unchanged": the
image is the one already running (apply says "no change"; the raw helm still runs an upgrade, as the
raw procedure would).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CONTEXT, HELM, KUBE_TOKEN, NS, PY, Figure, Result, deploy_bed, log, median, scratch, side_by_side, spread, timed_run,
)

TARGET = 1.3  # P2b; P2a's target is its own import floor, measured in the same run, + FLOOR_MARGIN
FLOOR_MARGIN = 0.10
APP = "ingest-core"
# What an apply cannot start helm without: the CLI (typer), config (pydantic), the registry client
# (requests), helm (pyhelm3) and the deploy lock (the kubernetes client). (rich: only on a terminal.)
STACK_IMPORTS = ("import typer, pydantic, requests, pyhelm3.client, kubernetes.config; "
                 "from kubernetes.client import CoordinationV1Api")


def raw_deploy(bed, image: str, n: int, env: dict[str, str] | None = None) -> float:
    """The by-hand equivalent: a fresh depth-1 clone of master, then helm upgrade --install --wait."""
    clone = bed.tmp / f"raw-clone-{n}"
    shutil.rmtree(clone, ignore_errors=True)
    env = env or bed.env
    took_clone, _ = timed_run(["git", "clone", "-q", "--depth", "1", "--single-branch", "--branch", "master",
                               bed.deploy_repo.url, str(clone)], env)
    took_helm, _ = timed_run([
        str(HELM), "upgrade", "--install", APP, str(clone / "apps" / APP), "-f", str(clone / "apps" / "prod.yaml"),
        "--set-string", f"environment=prod,image={image},replicas=1,gitlab_app=hca-{APP},gitlab_env=prod",
        "--wait", "-n", NS, "--kube-context", CONTEXT,
    ], env)
    shutil.rmtree(clone, ignore_errors=True)
    return took_clone + took_helm


def run(runs: int = 5) -> Result:
    result = Result("P2")
    with scratch("p2") as tmp, deploy_bed(tmp) as bed:
        tags = ["p2a", "p2b"]
        digests = {t: bed.publish(APP, t) for t in tags}
        images = {t: bed.image(APP, t, digests[t]) for t in tags}
        # changed: alternate tags on each side. Both sides share the release, so each side flips it.
        state = {"n": 0}

        def next_tag() -> str:
            state["n"] += 1
            return tags[state["n"] % 2]

        def apply_changed(i: int) -> float:
            took, proc = bed.apply([APP], next_tag())
            if "no change" in proc.stderr:
                raise RuntimeError("apply saw no change in a 'changed' run")
            return took

        def raw_changed(i: int) -> float:
            return raw_deploy(bed, images[next_tag()], i)

        log("P2 changed: apply vs raw, alternating tags")
        a_ch, r_ch = side_by_side(apply_changed, raw_changed, runs, warmup=1)
        log("P2 floor: the stack's imports alone vs raw")
        imports, r_fl = side_by_side(lambda i: timed_run([str(PY), "-c", STACK_IMPORTS], bed.env)[0], raw_changed,
                                     runs, warmup=1)

        # unchanged: bring the release to p2a with apply, then re-apply the same tag ("no change").
        # The raw side re-runs the same values against a second, identical emulated cluster: on the shared
        # one its upgrade would record a release without apply's config SHA, and apply would redeploy.
        from manual_deploy_sandbox.kube import KubeEmulator
        from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

        bed.apply([APP], "p2a")
        kube2 = KubeEmulator(token=KUBE_TOKEN, pod_start_delay=0.2, progress_deadline=2.0).start()
        try:
            env2 = dict(bed.env, KUBECONFIG=str(write_kubeconfig(bed.tmp / "kubeconfig-raw",
                                                                  ingest_contexts(kube2.url), token=KUBE_TOKEN)))
            raw_deploy(bed, images["p2a"], 99, env2)  # the release exists there too, at the same image

            def apply_same(i: int) -> float:
                took, proc = bed.apply([APP], "p2a")
                if "no change" not in proc.stderr:
                    raise RuntimeError("apply did not see 'no change' in an 'unchanged' run:\n" + proc.stderr[-1500:])
                return took

            def raw_same(i: int) -> float:
                return raw_deploy(bed, images["p2a"], 100 + i, env2)

            log("P2 unchanged: apply (no change) vs raw (same values, second emulated cluster)")
            a_un, r_un = side_by_side(apply_same, raw_same, runs, warmup=1)
        finally:
            kube2.stop()

    floor = (median(r_fl) + median(imports)) / median(r_fl)
    result.figures.append(Figure("P2a", "apply overhead, image changed", median(a_ch) / median(r_ch), "x",
                                 round(floor + FLOOR_MARGIN, 2), "le",
                                 f"apply {spread(a_ch)}; raw {spread(r_ch)}; target = floor {floor:.2f}x + {FLOOR_MARGIN}"))
    result.notes.append(f"P2a floor: raw + the imports apply cannot start helm without = {floor:.2f}x raw "
                        f"(imports {spread(imports)}: {STACK_IMPORTS!r}; raw {spread(r_fl)})")
    result.figures.append(Figure("P2b", "apply overhead, image unchanged", median(a_un) / median(r_un), "x", TARGET,
                                 "le", f"apply {spread(a_un)}; raw {spread(r_un)}"))
    return result


if __name__ == "__main__":
    from common import print_result

    sys.exit(print_result(run()))
