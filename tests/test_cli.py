"""The CLI contract: commands listed, global options, exit codes, light start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from manual_deploy import __version__
from manual_deploy.cli import hoist_global_options

VENV_BIN = Path(sys.executable).parent


def test_help_lists_the_chain(cli):
    result = cli("--help")
    assert result.code == 0
    text = " ".join(result.stdout.split())
    for command in ("tag", "wait-image", "apply"):
        assert command in text
    assert "not implemented yet" not in text
    assert "Exit codes: 0 success" in text and "3 refused by a safety check" in text


def test_apply_requires_an_env(cli):
    result = cli("apply")
    assert result.code == 2
    assert "--env" in result.stderr
    assert result.stdout == ""


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.stdout.strip() == f"manual-deploy {__version__}"


def test_unknown_option_is_a_usage_error(cli):
    result = cli("tag", "--frobnicate")
    assert result.code == 2
    assert "No such option" in result.stderr


def test_installed_console_script_runs():
    exe = VENV_BIN / "manual-deploy"
    assert exe.exists(), "the package must be installed (pip install -e .)"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_help_does_not_import_heavy_libraries():
    """`--help` must stay fast: git, kubernetes, pyhelm3 and requests are imported lazily."""
    code = (
        "import sys\n"
        "from manual_deploy.cli import main\n"
        "rc = main(['--help'])\n"
        "heavy = sorted(m for m in ('git', 'kubernetes', 'pyhelm3', 'requests', 'pydantic', 'yaml') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr


def test_global_options_may_follow_the_command():
    assert hoist_global_options(["tag", "-o", "json", "--env", "prod"]) == ["-o", "json", "tag", "--env", "prod"]
    assert hoist_global_options(["tag", "--output=json", "-v"]) == ["--output=json", "-v", "tag"]
    assert hoist_global_options(["--config", "c.yaml", "tag", "--reason", "-v"]) == ["--config", "c.yaml", "-v", "tag", "--reason"]
    assert hoist_global_options(["--version"]) == ["--version"]
    assert hoist_global_options(["tag", "--", "-v"]) == ["tag", "--", "-v"]


def test_missing_config_file_is_exit_2(cli, tmp_path):
    result = cli("--config", tmp_path / "nope.yaml", "tag", "--repo", tmp_path)
    assert result.code == 2
    assert "config file not found" in result.stderr


def test_config_from_environment_variable(cli, tmp_path, monkeypatch, app_repo):
    bad = tmp_path / "bad.yaml"
    bad.write_text("registry: {}\n")
    monkeypatch.setenv("MANUAL_DEPLOY_CONFIG", str(bad))
    result = cli("tag", "--repo", app_repo.checkout, "-o", "json")
    assert result.code == 2
    assert "registry.url" in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2


def test_progress_is_plain_text_off_a_terminal_and_styled_when_forced():
    """A pipe or CI log gets exactly the words (and rich is not even loaded); FORCE_COLOR brings the styles back."""
    import os

    code = ("import sys; from manual_deploy.console import Output; o = Output(); o.warn('careful'); o.success('done'); "
            "print('rich' if 'rich.console' in sys.modules else 'plain')")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    env["PYTHONIOENCODING"] = "utf-8"

    def run(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              encoding="utf-8", timeout=60, check=True)

    plain, forced = run(), run(FORCE_COLOR="1")
    assert (plain.stdout, plain.stderr) == ("plain\n", "warning: careful\n✓ done\n")
    assert forced.stdout == "rich\n"
    assert "\x1b[" in forced.stderr and "careful" in forced.stderr and "done" in forced.stderr
