"""P5 parallel apps: `apply` with 8 apps (`--app` x8) vs 1 app, every run changing the image(s).

8-app runs use tag a/b alternately for all eight; 1-app runs deploy ingest-core with tag c/d alternately,
so every app really changes on every run (ingest-core goes a, c, b, d, a, …).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EIGHT_APPS, Figure, Result, deploy_bed, log, median, scratch, side_by_side, spread  # noqa: E402

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
    result.figures.append(Figure("P5", "apply 8 apps vs 1 app", median(t8) / median(t1), "x", TARGET, "le",
                                 f"8 apps {spread(t8)}; 1 app {spread(t1)}"))
    return result


if __name__ == "__main__":
    from common import print_result

    sys.exit(print_result(run()))
