"""Reading ingest-kube-deployment's bash config files without ever executing them."""

from __future__ import annotations

from manual_deploy.deployconfig import parse_env_file

ENVIRONMENT_PROD = """#!/usr/bin/env bash
set -a

FORCE_REFRESH=TRUE
# Versions of applications deployed. Either a branch or a tag that corresponds with an image in quay is accepted.
ONTOLOGY_REF=1.0.50
FASTQ_VALIDATOR_IMAGE=quay.io/ebi-ait/fastq_utils:d2020-09-07.1

AWS_PROFILE=embl-ebi
TF_VAR_node_size="t3a.large"
TF_VAR_node_count='2'
DEPLOYMENT_STAGE=${FILE_NAME#*_}
KUBECONFIG_PATH=$PROJECT_ROOT/config/cluster-secrets/kubeconfig_${DEPLOYMENT_STAGE}
TF_VAR_account_id=$(aws sts get-caller-identity --profile ${AWS_PROFILE} | jq -r .Account)
LEGACY=`whoami`
TF_VAR_aws_region=us-east-1
TF_VAR_terraform_bucket=org-humancellatlas-${TF_VAR_aws_region}-terraform
export EXPORTED=yes
source $PROJECT_ROOT/config/replicas/environment_${DEPLOYMENT_STAGE}
. ./other
NOT_AN_ASSIGNMENT = 1
A=b touch /tmp/pwned

set +a
"""


def test_plain_and_quoted_assignments_are_read():
    values = parse_env_file(ENVIRONMENT_PROD)
    assert values["FORCE_REFRESH"] == "TRUE"
    assert values["ONTOLOGY_REF"] == "1.0.50"
    assert values["FASTQ_VALIDATOR_IMAGE"] == "quay.io/ebi-ait/fastq_utils:d2020-09-07.1"
    assert values["TF_VAR_node_size"] == "t3a.large" and values["TF_VAR_node_count"] == "2"
    assert values["EXPORTED"] == "yes"


def test_known_references_resolve_unknown_ones_skip_the_line():
    values = parse_env_file(ENVIRONMENT_PROD)
    assert values["TF_VAR_terraform_bucket"] == "org-humancellatlas-us-east-1-terraform"
    for skipped in ("DEPLOYMENT_STAGE", "KUBECONFIG_PATH"):
        assert skipped not in values


def test_command_substitution_and_commands_are_never_taken():
    values = parse_env_file(ENVIRONMENT_PROD)
    for skipped in ("TF_VAR_account_id", "LEGACY", "NOT_AN_ASSIGNMENT", "A"):
        assert skipped not in values


def test_replicas_file():
    text = "#!/usr/bin/env bash\nset -a\n\n# REPLICAS\nINGEST_CORE_REPLICAS=1\nINGEST_EXPORTER_REPLICAS=10\n\nset +a\n"
    assert parse_env_file(text) == {"INGEST_CORE_REPLICAS": "1", "INGEST_EXPORTER_REPLICAS": "10"}
