"""Names that reach git or helm are checked against strict patterns first."""

from __future__ import annotations

import pytest

from manual_deploy import validate
from manual_deploy.errors import UsageError
from manual_deploy.redact import redact


@pytest.mark.parametrize("value", ["HEAD", "HEAD~2", "origin/master", "0ec3e066", "v1.2^{commit}", "dev"])
def test_revisions_users_type_are_accepted(value):
    assert validate.git_rev(value) == value


@pytest.mark.parametrize("value", ["--upload-pack=evil", "-x", "a..b", "a b", "a;rm -rf /", "", "x" * 201, "@{-1}"])
def test_hostile_or_malformed_revisions_are_rejected(value):
    with pytest.raises(UsageError):
        validate.git_rev(value)


@pytest.mark.parametrize("value", ["0ec3e06", "prod-0ec3e066-14-04-2022.1649922784", "1.0.50", "master_5ddba2b"])
def test_tags_accepted(value):
    assert validate.image_tag(value) == value


@pytest.mark.parametrize("value", ["-f", "a..b", "x.lock", "a/b", "a:b", ".hidden", "x" * 129])
def test_tags_rejected(value):
    with pytest.raises(UsageError):
        validate.image_tag(value)


@pytest.mark.parametrize("value", ["Ingest-Core", "-core", "core-", "a_b", "a.b"])
def test_app_names_rejected(value):
    with pytest.raises(UsageError):
        validate.app_name(value)


def test_redact_hides_url_credentials_headers_and_known_secrets():
    text = "fatal: https://robot:tok3n-value@quay.io/x failed; Authorization: Bearer abc.def; QUAY=sekrit-123"
    cleaned = redact(text, "sekrit-123")
    assert "tok3n-value" not in cleaned and "abc.def" not in cleaned and "sekrit-123" not in cleaned
    assert "https://***@quay.io/x" in cleaned


def test_the_cli_masks_the_tokens_users_export_in_any_error(cli, monkeypatch):
    """A safety net beyond each client's own care: an error that carries GITLAB_TOKEN's value (here the
    config path itself, a contrived carrier) is printed with the value masked; GitLab's header too."""
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-leaky-0123456789")
    result = cli("--config", "/nonexistent/glpat-leaky-0123456789.yaml", "status", "--env", "prod")
    assert result.code == 2 and "config file not found" in result.stderr
    assert "glpat-leaky" not in result.stderr + result.stdout and "***" in result.stderr
    assert redact("PRIVATE-TOKEN: glpat-abc") == "PRIVATE-TOKEN: ***"
