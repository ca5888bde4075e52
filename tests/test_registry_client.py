"""Pure parts of the registry client and the wait logic: challenge parsing, durations, build choice."""

from __future__ import annotations

import pytest

from manual_deploy.durations import format_duration, parse_duration
from manual_deploy.errors import UsageError
from manual_deploy.images import split_repo
from manual_deploy.wait_image import pick_build
from manual_deploy.registry import Credentials, parse_challenge


def test_challenge_with_commas_inside_quotes():
    scheme, params = parse_challenge(
        'Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:ebi-ait/ingest-core:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://quay.io/v2/auth",
        "service": "quay.io",
        "scope": "repository:ebi-ait/ingest-core:pull,push",
    }


def test_challenge_with_spaces_unquoted_values_and_escapes():
    scheme, params = parse_challenge('Bearer realm="http://127.0.0.1:1/token", service=test, error="a \\"b\\""')
    assert scheme == "bearer"
    assert params == {"realm": "http://127.0.0.1:1/token", "service": "test", "error": 'a "b"'}


def test_basic_challenge_and_empty_header():
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge("") == ("", {})


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("1.5s", 1.5), ("500ms", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "-5", "0", "5x", "m"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration(text, option="--timeout")


def test_format_duration():
    assert format_duration(5) == "5s"
    assert format_duration(75.2) == "1m15s"
    assert format_duration(3725) == "1h02m05s"


def test_pick_build_prefers_newest_and_matches_by_ref_too():
    builds = [
        {"id": "new-other", "tags": ["abc1234"], "trigger_metadata": None},
        {"id": "by-ref", "tags": ["latest"], "trigger_metadata": {"ref": "refs/tags/0ec3e06"}},
        {"id": "older", "tags": ["0ec3e06"], "trigger_metadata": None},
    ]
    assert pick_build(builds, "0ec3e06")["id"] == "by-ref"
    assert pick_build(builds, "nope") is None


def test_split_repo():
    assert split_repo("quay.io/ebi-ait/ingest-core") == ("quay.io", "ebi-ait/ingest-core")
    assert split_repo("127.0.0.1:5000/ebi-ait/x") == ("127.0.0.1:5000", "ebi-ait/x")


def test_credentials_repr_hides_values():
    creds = Credentials.from_env({"QUAY_TOKEN": "tok-secret", "QUAY_USERNAME": "robot", "QUAY_PASSWORD": "pw-secret"})
    assert "tok-secret" not in repr(creds) and "pw-secret" not in repr(creds)
    assert creds.quay_token == "tok-secret"
