"""The config contract: bundled ingest config, per-app defaults, errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from manual_deploy.config import load_config, parse_config
from manual_deploy.errors import ConfigError, UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
INGEST_APPS = {
    "ingest-broker", "ingest-core", "ingest-exporter", "ingest-staging-manager", "ingest-state-tracking",
    "ingest-validator", "ingest-ui", "ingest-graph-validator", "ingest-archiver", "ontology",
}

MINIMAL = """
registry: {url: http://127.0.0.1:5000, api_url: http://127.0.0.1:5001/api/v1, namespace: ebi-ait}
deployment_repo: {url: /tmp/ingest-kube-deployment.git}
environments:
  dev: {kube_context: ingest-eks-dev, namespace: dev-environment, config_branch: dev, source_branch: dev}
apps:
  ingest-core:
"""


def test_bundled_config_is_the_shipped_configs_file():
    bundled = load_config()
    shipped = load_config(REPO_ROOT / "configs" / "ingest.yaml")
    assert bundled.model_dump() == shipped.model_dump()
    assert INGEST_APPS <= set(bundled.apps)


def test_bundled_environments_match_the_ingest_clusters():
    config = load_config()
    assert {name: (e.kube_context, e.namespace, e.config_branch, e.source_branch) for name, e in config.environments.items()} == {
        "dev": ("ingest-eks-dev", "dev-environment", "dev", "dev"),
        "staging": ("ingest-eks-staging", "staging-environment", "master", "master"),
        "prod": ("ingest-eks-prod", "prod-environment", "master", "master"),
    }
    assert config.environments["prod"].confirm is True
    assert config.environments["dev"].confirm is False


def test_per_app_defaults():
    core = load_config().app("ingest-core")
    assert core.image_repo == "quay.io/ebi-ait/ingest-core"
    assert core.chart == "apps/ingest-core"
    assert core.release == "ingest-core"
    assert core.replicas_variable == "INGEST_CORE_REPLICAS"
    assert core.gitlab_project == "hca/ingest-core"
    assert core.image_value("prod-0ec3e066-14-04-2022.1649922784") == (
        "quay.io/ebi-ait/ingest-core:prod-0ec3e066-14-04-2022.1649922784"
    )
    assert load_config().app("ingest-staging-manager").replicas_variable == "INGEST_STAGING_MANAGER_REPLICAS"


def test_chart_exceptions_archiver_and_ontology():
    config = load_config()
    assert config.app("ingest-archiver").replicas_variable is None
    ontology = config.app("ontology")
    assert ontology.replicas_variable is None
    assert ontology.image_value("1.0.50") == "1.0.50"
    assert config.app("ingest-node-accessioner").image_value("abc1234") == "abc1234"


def test_registry_host_drives_image_repo():
    config = parse_config(MINIMAL, "test")
    assert config.app("ingest-core").image_repo == "127.0.0.1:5000/ebi-ait/ingest-core"
    assert config.registry.host == "127.0.0.1:5000"


@pytest.mark.parametrize(
    "mutation, where",
    [
        (lambda t: t.replace("namespace: ebi-ait", "namespace: ebi-ait, nmespace: x"), "registry.nmespace: unknown key"),
        (lambda t: t.replace("kube_context: ingest-eks-dev, ", ""), "environments.dev.kube_context: required key is missing"),
        (lambda t: t + "    image_style: bare\n", "apps.ingest-core.image_style"),
        (lambda t: t.replace("url: http://127.0.0.1:5000", "url: quay.io"), "registry.url"),
        (lambda t: t.replace("source_branch: dev}", "source_branch: '--force'}"), "environments.dev.source_branch"),
        (lambda t: t + "  Bad_App: {}\n", "apps"),
        (lambda t: t + "helm_timeout: 5m\n", "helm_timeout: unknown key"),
    ],
)
def test_invalid_config_names_the_bad_key(mutation, where):
    with pytest.raises(ConfigError) as caught:
        parse_config(mutation(MINIMAL), "my.yaml")
    assert where in caught.value.message
    assert "my.yaml" in caught.value.message


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        parse_config("registry: [unclosed\n", "x.yaml")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_config("- a\n- b\n", "x.yaml")


def test_unknown_names_list_the_known_ones():
    config = load_config()
    with pytest.raises(UsageError) as caught:
        config.environment("qa")
    assert "dev, staging, prod" in caught.value.hint
    with pytest.raises(UsageError, match="invalid app name"):
        config.app("../etc")
