"""P1 start-up: `manual-deploy --help` (the console script) vs `python -c "import typer"` (same venv python)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CLI, PY, Figure, Result, isolated_env, median, scratch, side_by_side, spread, timed_run  # noqa: E402

TARGET = 1.5


def run(runs: int = 10) -> Result:
    result = Result("P1")
    with scratch("p1") as tmp:
        env = isolated_env(tmp)
        help_t, typer_t = side_by_side(
            lambda i: timed_run([str(CLI), "--help"], env)[0],
            lambda i: timed_run([str(PY), "-c", "import typer"], env)[0],
            runs, warmup=2,
        )
    ratio = median(help_t) / median(typer_t)
    result.figures.append(Figure("P1", "start-up: --help vs import typer", ratio, "x", TARGET, "le",
                                 f"--help {spread(help_t)}; import typer {spread(typer_t)}"))
    return result


if __name__ == "__main__":
    from common import print_result

    sys.exit(print_result(run()))
