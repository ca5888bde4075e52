"""P5 parallel apps: `apply` with 8 apps (`--app` x8) vs 1 app, every run changing the image(s).

8-app runs use tag a/b alternately for all eight; 1-app runs deploy ingest-core with tag c/d alternately,
so every app really changes on every run (ingest-core goes a, c, b, d, a, …).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CONTEXT, EIGHT_APPS, HELM, NS, Figure, Result, deploy_bed, log, median, scratch, side_by_side, spread,
)

TARGET = 1.5


def run(runs: int = 5) -> Result:
    result = Result("P5")
    with scratch("p5") as tmp, deploy_bed(tmp) as bed:
        for app in EIGHT_APPS:
            for tag in ("p5a", "p5b"):
                bed.publish(app, tag)
        for tag in ("p5c", "p5d"):
            bed.publish("ingest-core", tag)

        def check(proc, n: int) -> None:
            if "no change" in proc.stderr or proc.stdout.count("\n") < n:
                raise RuntimeError(f"expected {n} changed apps:\n{proc.stdout}\n{proc.stderr[-1500:]}")

        def eight(i: int) -> float:
            took, proc = bed.apply(list(EIGHT_APPS), "p5a" if i % 2 == 0 else "p5b")
            check(proc, 8)
            return took

        def one(i: int) -> float:
            took, proc = bed.apply(["ingest-core"], "p5c" if i % 2 == 0 else "p5d")
            check(proc, 1)
            return took

        log(f"P5: apply x8 apps vs x1 app, 1 warm-up + {runs} rounds")
        t8, t1 = side_by_side(eight, one, runs, warmup=1)
        log(f"P5 floor: raw helm upgrade --wait x8 in parallel vs x1, 1 warm-up + {runs} rounds")
        r8, r1 = raw_floor(bed, runs)
    result.figures.append(Figure("P5", "apply 8 apps vs 1 app", median(t8) / median(t1), "x", TARGET, "le",
                                 f"8 apps {spread(t8)}; 1 app {spread(t1)}"))
    result.notes.append(f"floor (no target): raw `helm upgrade --wait` x8 in parallel vs x1 on the same bed: "
                        f"{median(r8) / median(r1):.2f}x (x8 {spread(r8)}; x1 {spread(r1)})")
    return result


def raw_floor(bed, runs: int) -> tuple[list[float], list[float]]:
    """What the bed itself allows: helm alone, eight upgrades at once vs one, from one shallow clone.

    Tags as in the apply rounds: every upgrade really changes its image (ingest-core's own pair for x1).
    """
    clone = bed.tmp / "p5-raw-clone"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "master", f"file://{bed.deploy_repo.url}", str(clone)],
                   env=bed.env, check=True, capture_output=True)
    images = {(app, tag): bed.image(app, tag, bed.publish(app, tag)) for app in EIGHT_APPS for tag in ("p5e", "p5f")}
    images.update({("ingest-core", tag): bed.image("ingest-core", tag, bed.publish("ingest-core", tag)) for tag in ("p5g", "p5h")})

    def upgrade(apps, tag: str) -> float:
        started = time.perf_counter()
        procs = [subprocess.Popen([
            str(HELM), "upgrade", "--install", app, str(clone / "apps" / app), "-f", str(clone / "apps" / "prod.yaml"),
            "--set-string", f"environment=prod,image={images[(app, tag)]},replicas={10 if app == 'ingest-exporter' else 1},"
            f"gitlab_app=hca-{app},gitlab_env=prod", "--wait", "-n", NS, "--kube-context", CONTEXT,
        ], env=bed.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for app in apps]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"raw helm upgrade failed: {err.decode(errors='replace')[-1500:]}")
        return time.perf_counter() - started

    try:
        return side_by_side(lambda i: upgrade(EIGHT_APPS, "p5e" if i % 2 else "p5f"),
                            lambda i: upgrade(["ingest-core"], "p5g" if i % 2 else "p5h"), runs, warmup=1)
    finally:
        shutil.rmtree(clone, ignore_errors=True)


if __name__ == "__main__":
    from common import print_result

    sys.exit(print_result(run()))
