"""P4 cached config clone: `deployconfig.checkout` (the apply's "config" phase) with an empty cache vs again.

The deploy repo has >= 2,000 commits on master (`deployrepo.add_history(repo, 2000)`). Each round uses a
fresh MANUAL_DEPLOY_CACHE_DIR: the first checkout clones into it, the second reuses and refreshes it.
The call is timed in-process (the same function `apply` runs for its "config" phase).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, Result, isolated_env, log, median, patched_environ, scratch, spread  # noqa: E402

TARGET = 3.0
COMMITS = 2000


def run(runs: int = 7) -> Result:
    from manual_deploy import deployconfig
    from manual_deploy_sandbox.deployrepo import add_history, make_deploy_repo

    result = Result("P4")
    with scratch("p4") as tmp:
        repo = make_deploy_repo(tmp / "deploy-config")
        add_history(repo, COMMITS)
        count = int(repo.remote_git("rev-list", "--count", "master"))
        env = isolated_env(tmp)
        first, second = [], []
        with patched_environ(env):
            log(f"P4: checkout on a {count}-commit repo, 1 warm-up + {runs} rounds of (empty cache, warm cache)")
            for i in range(-1, runs):
                cache_root = tmp / f"cache-{i + 1}"
                import os

                os.environ["MANUAL_DEPLOY_CACHE_DIR"] = str(cache_root)
                t0 = time.perf_counter()
                a = deployconfig.checkout(repo.url, "master")
                t1 = time.perf_counter()
                b = deployconfig.checkout(repo.url, "master")
                t2 = time.perf_counter()
                if a.sha != b.sha or a.sha != repo.head("master"):
                    raise RuntimeError("checkouts disagree with the remote's master")
                if i >= 0:
                    first.append(t1 - t0)
                    second.append(t2 - t1)
    result.figures.append(Figure("P4", f"config clone: empty cache vs cached ({count} commits)",
                                 median(first) / median(second), "x", TARGET, "ge",
                                 f"first {spread(first)}; second {spread(second)}"))
    return result


if __name__ == "__main__":
    from common import print_result

    sys.exit(print_result(run()))
