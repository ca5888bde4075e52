"""A local ingest-kube-deployment: the repository an emergency deploy reads its charts and settings from.

Its shape follows github.com/ebi-ait/ingest-kube-deployment (the files are written here, not copied):

* `apps/Makefile`, per-environment helm values `apps/<env>.yaml`, and one helm chart per app under
  `apps/<app>/` (`Chart.yaml`, `values.yaml` full of `provide_through_set_flag`, `templates/`);
* `config/environment_<env>`: a bash file meant to be *sourced* (it runs `aws sts get-caller-identity`,
  which the product must never execute: the line is kept so tests can prove that);
* `config/replicas/environment_<env>`: the replica counts, `INGEST_<APP>_REPLICAS=<n>` between `set -a`/`set +a`.

The charts keep the real templates' shape (names, namespace, labels, annotations, image, replicas, ports,
resources, plain env values), and each feature the real charts use is a `_Chart` option, off by default:
`claim` (a PersistentVolumeClaim template the pod mounts), `secret_env` (env from `secretKeyRef`),
`secret_volume` (a Secret mounted as files), `liveness` and `readiness` (httpGet probes). ingest-broker has
the claim, the Secret env, the Secret volume and a liveness probe, as the team's chart has; ingest-ui a
readiness probe. Only ingest-broker needs objects an empty cluster lacks (the `aws-keys` and `api-keys`
Secrets, the `retained-gp2` StorageClass): a sandbox or test creates them first
(`manual_deploy_sandbox.prerequisites`). Every other chart installs into a cluster that holds only the
`<env>-environment` namespace.

Git is driven with plain `git` subprocesses (argument lists only, timeouts on each) through
`manual_deploy_sandbox.gitrepos`, so the fixture does not depend on the code under test.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from manual_deploy_sandbox.gitrepos import _ENV, IDENTITY, git

REPO_NAME = "ingest-kube-deployment"
ENVS: tuple[str, ...] = ("dev", "staging", "prod")

INGEST_APPS: tuple[str, ...] = (
    "ingest-broker",
    "ingest-core",
    "ingest-exporter",
    "ingest-staging-manager",
    "ingest-state-tracking",
    "ingest-validator",
    "ingest-ui",
    "ingest-graph-validator",
    "ingest-archiver",
    "ontology",
    "ingest-node-accessioner",
)

# The variables config/replicas/environment_<env> defines, in file order. The archiver, ontology and
# node-accessioner have none: their charts hard-code `replicas: 1`.
REPLICA_VARS: tuple[str, ...] = (
    "INGEST_BROKER_REPLICAS",
    "INGEST_CORE_REPLICAS",
    "INGEST_EXPORTER_REPLICAS",
    "INGEST_STAGING_MANAGER_REPLICAS",
    "INGEST_STATE_TRACKING_REPLICAS",
    "INGEST_VALIDATOR_REPLICAS",
    "INGEST_UI_REPLICAS",
    "INGEST_GRAPH_VALIDATOR_REPLICAS",
)



def replicas_var(app: str) -> str:
    """The replicas variable name for `app` (ingest-core -> INGEST_CORE_REPLICAS); not all apps have one."""
    return app.upper().replace("-", "_") + "_REPLICAS"


DEFAULT_REPLICAS: dict[str, dict[str, int]] = {
    env: {var: (10 if env == "prod" and var == "INGEST_EXPORTER_REPLICAS" else 1) for var in REPLICA_VARS}
    for env in ENVS
}

ONTOLOGY_REF = "1.0.50"
FASTQ_VALIDATOR_IMAGES: dict[str, str] = {
    "dev": "quay.io/ebi-ait/fastq_utils:54bcf9f",
    "staging": "quay.io/ebi-ait/fastq_utils:54bcf9f",
    "prod": "quay.io/ebi-ait/fastq_utils:d2020-09-07.1",
}
VPC_CIDR_BLOCKS: dict[str, str] = {"dev": "10.40.0.0/16", "staging": "10.61.0.0/16", "prod": "10.70.0.0/16"}

# The comment the dev-only commit adds to config/replicas/environment_dev on branch dev.
DEV_ONLY_COMMENT = "# dev cluster: keep every app at a single replica unless a test needs more"

AWS_STS_LINE = "TF_VAR_account_id=$(aws sts get-caller-identity --profile ${AWS_PROFILE} | jq -r .Account)"

_TIMEOUT = 60  # seconds, for the one subprocess this module runs itself (fast-import with a stream on stdin)


# --------------------------------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class _Service:
    port: int
    target_port: int
    type: str = "NodePort"
    role: str = "ingestion"
    annotations: bool = True  # `annotations: {}` in metadata, as most real service.yaml files have


@dataclass(frozen=True)
class _Claim:
    """A PersistentVolumeClaim template (templates/persistentvolumeclaim.yaml) and the pod's mount of it."""

    name: str
    storage_class: str
    mount_path: str
    volume: str  # the pod's volume name
    size: str = "1Gi"
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)


@dataclass(frozen=True)
class _SecretVolume:
    """A Secret mounted as files: `items` are (key in the Secret, file name under mount_path)."""

    volume: str
    secret: str
    items: tuple[tuple[str, str], ...]
    mount_path: str


@dataclass(frozen=True)
class _Probe:
    """An httpGet probe; port None means the container's port (by name when it has one)."""

    path: str = "/"
    port: int | str | None = None
    initial_delay: int = 0
    period: int = 10


@dataclass(frozen=True)
class _Chart:
    name: str
    env: tuple[tuple[str, str], ...] = ()  # (NAME, value exactly as written after `value: `)
    image: str = "{{ .Values.image }}"
    replicas: str = "{{ .Values.replicas }}"
    api_version: str = "v2"
    version: str = "1.0.0"
    gitlab: bool = True  # app.gitlab.com annotations on the Deployment and the pod
    rollme: bool = True
    rolling_update: bool = False
    dns_policy: bool = False
    port: int | None = None
    port_name: str | None = None
    memory: tuple[str, str] | None = None  # (limit, request)
    cpu: tuple[str, str] | None = None
    service: _Service | None = None
    values_placeholders: tuple[str, ...] = ("environment", "image", "replicas")
    values_extra: str = ""
    helmignore: bool = True
    # Features that need cluster objects or behaviour beyond a bare namespace (all off by default):
    claim: _Claim | None = None
    secret_env: tuple[tuple[str, str, str], ...] = ()  # (NAME, Secret name, key), after the plain env
    secret_volume: _SecretVolume | None = None
    liveness: _Probe | None = None
    readiness: _Probe | None = None


_INGEST_API = "http://$(INGEST_CORE_SERVICE_SERVICE_HOST):$(INGEST_CORE_SERVICE_SERVICE_PORT)"
_RABBIT_URL = "amqp://$(RABBIT_SERVICE_SERVICE_HOST):$(RABBIT_SERVICE_SERVICE_PORT_SERVICE)"

_CHARTS: dict[str, _Chart] = {
    c.name: c
    for c in (
        _Chart(
            "ingest-broker",
            env=(
                ("INGEST_UI", "https://{{ .Values.ui }}"),
                ("INGEST_API", "http://${INGEST_CORE_SERVICE_SERVICE_HOST}:${INGEST_CORE_SERVICE_SERVICE_PORT}"),
                ("SPREADSHEET_STORAGE_DIR", "/data/spreadsheets"),
                ("INGEST_API_JWT_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
            ),
            dns_policy=True,
            port=5000,
            port_name="http",
            memory=("1.5Gi", "400Mi"),
            service=_Service(80, 5000),
            claim=_Claim("spreadsheet-storage-claim", "retained-gp2", "/data/spreadsheets", "spreadsheets"),
            secret_env=(
                ("AWS_ACCESS_KEY_ID", "aws-keys", "exporter-access-key-id"),
                ("AWS_SECRET_ACCESS_KEY", "aws-keys", "exporter-access-key-secret"),
            ),
            secret_volume=_SecretVolume(
                "service-account", "api-keys", (("ingest-service-account-auth-info", "service-account.json"),),
                "/etc/secrets",
            ),
            liveness=_Probe("/", initial_delay=60, period=3),
        ),
        _Chart(
            "ingest-core",
            env=(
                ("DEBUG", "{{ .Values.debug | quote }}"),
                ("MONGO_URI", "mongodb://${MONGO_SERVICE_SERVICE_HOST}:${MONGO_SERVICE_SERVICE_PORT}/admin"),
                ("RABBIT_HOST", "${RABBIT_SERVICE_SERVICE_HOST}"),
                ("RABBIT_PORT", "${RABBIT_SERVICE_SERVICE_PORT_SERVICE}"),
                ("SCHEMA_BASE_URI", "https://{{ .Values.schema }}/"),
                ("GCP_PROJECT_WHITELIST", "{{ .Values.gcpProjectWhitelist }}"),
                ("SVC_AUTH_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
                ("USR_AUTH_AUDIENCE", "{{ .Values.usrAuthAudience }}"),
                ("AUTH_ISSUER", "{{ .Values.aaiAuthority }}"),
                ("NOTIFICATIONS_SMTP_HOST", "{{ .Values.notifications.smtp.host }}"),
                ("NOTIFICATIONS_SMTP_PORT", '"587"'),
                ("NOTIFICATIONS_AMQP_SEND_EXCHANGE", "{{ .Values.notifications.amqp.sendExchange }}"),
                ("NOTIFICATIONS_AMQP_SEND_ROUTING_KEY", "{{ .Values.notifications.amqp.sendRoutingKey }}"),
                ("INGEST_UI", "https://{{ .Values.ui }}"),
            ),
            rolling_update=True,
            port=8080,
            port_name="http",
            memory=("2.5Gi", "1.4Gi"),
            service=_Service(80, 8080, annotations=False),
        ),
        _Chart(
            "ingest-exporter",
            env=(
                ("INGEST_API", _INGEST_API),
                ("RABBIT_URL", _RABBIT_URL),
                ("TERRA_BUCKET_NAME", "{{ .Values.terraBucketName }}"),
                ("TERRA_BUCKET_PREFIX", "{{ .Values.terraBucketPrefix }}"),
                ("TERRA_GCS_NOTIFICATION_TOPIC", "{{ .Values.gcsNotificationTopic }}"),
                ("TERRA_GCS_NOTIFICATION_SUB", "{{ .Values.gcsNotificationSub }}"),
                ("GCP_PROJECT", "{{ .Values.terraGcpProject }}"),
                ("INGEST_API_JWT_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
                ("METADATA_SERVICE_PAGE_SIZE", "'10'"),
            ),
            rolling_update=True,
            dns_policy=True,
            memory=("1200Mi", "600Mi"),
            values_extra="\nstaging:\n  waitTime: 500\n  waitAttempts: 10\n",
        ),
        _Chart(
            "ingest-staging-manager",
            env=(
                ("INGEST_API", _INGEST_API),
                ("RABBIT_URL", "amqp://${RABBIT_SERVICE_SERVICE_HOST}:${RABBIT_SERVICE_SERVICE_PORT_SERVICE}"),
                ("STAGING_API", "{{ .Values.uploadScheme }}://{{ .Values.upload }}"),
                ("INGEST_API_JWT_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
            ),
            rolling_update=True,
            memory=("40Mi", "30Mi"),
        ),
        _Chart(
            "ingest-state-tracking",
            env=(
                ("RABBIT_HOST", "${RABBIT_SERVICE_SERVICE_HOST}"),
                ("RABBIT_PORT", "${RABBIT_SERVICE_SERVICE_PORT_SERVICE}"),
                ("INGEST_API_ROOT", "http://${INGEST_CORE_SERVICE_SERVICE_HOST}:${INGEST_CORE_SERVICE_SERVICE_PORT}"),
                ("UPDATER_PERIOD_MILLISECONDS", '"50"'),
                ("REDIS_HOST", "$(REDIS_SERVICE_SERVICE_HOST)"),
                ("REDIS_PORT", "$(REDIS_SERVICE_SERVICE_PORT)"),
                ("INGEST_API_JWT_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
            ),
            rolling_update=True,
            port=8999,
            memory=("700Mi", "500Mi"),
            service=_Service(8080, 8999, type="ClusterIP", annotations=False),
        ),
        _Chart(
            "ingest-validator",
            env=(
                ("INGEST_SCHEME", "http"),
                ("INGEST_HOST", "$(INGEST_CORE_SERVICE_SERVICE_HOST)"),
                ("INGEST_PORT", "$(INGEST_CORE_SERVICE_SERVICE_PORT)"),
                ("RABBIT_HOST", "$(RABBIT_SERVICE_SERVICE_HOST)"),
                ("RABBIT_PORT", "$(RABBIT_SERVICE_SERVICE_PORT_SERVICE)"),
                ("UPLOAD_SCHEME", '"{{ .Values.uploadScheme }}"'),
                ("UPLOAD_PORT", '"{{ .Values.uploadPort }}"'),
                ("UPLOAD_HOST", "{{ .Values.upload }}"),
                ("OLS_URL", "{{ .Values.olsUrl }}"),
                ("FASTQ_VALIDATION_IMAGE", "{{ .Values.fastqImage }}"),
                ("INGEST_API_JWT_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
            ),
            dns_policy=True,
            memory=("400Mi", "200Mi"),
            values_placeholders=("environment", "image", "fastqImage", "replicas"),
        ),
        _Chart(
            "ingest-ui",
            env=(
                ("INGEST_API_URL", "https://{{ .Values.ingest }}"),
                ("BROKER_API_URL", "https://{{ .Values.broker }}"),
                ("SCHEMA_API_URL", "https://{{ .Values.schema }}/"),
                ("DSS_API_URL", "https://{{ .Values.dss }}"),
                ("DOMAIN_WHITELIST", "{{ .Values.domainWhitelist }}"),
                ("SECURED_ENDPOINTS", "{{ .Values.securedEndpoints }}"),
                ("AAI_CLIENT_ID", "{{ .Values.aaiClientId }}"),
                ("AAI_AUTHORITY", "{{ .Values.aaiAuthority }}"),
                ("OLS_URL", "{{ .Values.olsUrl }}"),
            ),
            dns_policy=True,
            port=4200,
            memory=("20Mi", "15Mi"),
            service=_Service(80, 4200),
            readiness=_Probe("/", initial_delay=10, period=5),
        ),
        _Chart(
            "ingest-graph-validator",
            env=(
                ("INGEST_GRAPH_VALIDATOR_INGEST_API_URL", f'"{_INGEST_API}"'),
                ("INGEST_GRAPH_VALIDATOR_INGEST_JWT_AUDIENCE", "{{ .Values.svcAuthAudience }}"),
                ("AMQP_CONNECTION",
                 '"amqp://guest:guest@$(RABBIT_SERVICE_SERVICE_HOST):$(RABBIT_SERVICE_SERVICE_PORT_SERVICE)"'),
                ("INGEST_GRAPH_VALIDATOR_NEO4J_URL", '"bolt://$(NEO4J_SERVICE_SERVICE_HOST)"'),
            ),
            dns_policy=True,
            memory=("1.5Gi", "400Mi"),
            cpu=("200m", "100m"),
            values_placeholders=("environment", "image", "fastqImage", "replicas"),
        ),
        _Chart(
            "ingest-archiver",
            env=(
                ("RABBITMQ_URL", _RABBIT_URL),
                ("INGEST_API_URL", _INGEST_API),
                ("ONTOLOGY_API_URL", "http://$(ONTOLOGY_SERVICE_SERVICE_HOST):$(ONTOLOGY_SERVICE_SERVICE_PORT)"),
                ("DSP_API_URL", "{{ .Values.dspUrl }}"),
                ("AAP_API_URL", "{{ .Values.aapUrl }}"),
                ("AAP_API_DOMAIN", "{{ .Values.aapDomain }}"),
                ("BIOSTUDIES_API_URL", "{{ .Values.biostudiesApiUrl }}"),
                ("BIOSTUDIES_STUDY_URL", "{{ .Values.biostudiesStudyUrl }}"),
                ("ENA_WEBIN_API_URL", "{{ .Values.enaWebinApiUrl }}"),
                ("AAP_API_USER", "{{ .Values.aapUser }}"),
            ),
            replicas="1",
            api_version="v1",  # the real archiver chart is still a helm-2 style chart
            version="0.1.0",
            dns_policy=True,
            port=5000,
            memory=("95Mi", "60Mi"),
            service=_Service(80, 5000),
        ),
        _Chart(
            "ontology",
            image="quay.io/ebi-ait/ontology:{{ .Values.image }}",
            replicas="1",
            gitlab=False,
            rolling_update=True,
            port=8080,
            memory=("2.5Gi", "1.8Gi"),
            service=_Service(80, 8080, role="ontology-service"),
            values_placeholders=("environment", "image"),
        ),
        _Chart(
            "ingest-node-accessioner",
            env=(
                ("INGEST_HOST", "$(INGEST_CORE_SERVICE_SERVICE_HOST)"),
                ("INGEST_PORT", "$(INGEST_CORE_SERVICE_SERVICE_PORT)"),
                ("RABBIT_HOST", "$(RABBIT_SERVICE_SERVICE_HOST)"),
                ("RABBIT_PORT", "$(RABBIT_SERVICE_SERVICE_PORT)"),
                ("UUID_EXCHANGE", "ingest.accession.exchange"),
                ("UUID_QUEUE", "ingest.metadata.accession.queue"),
            ),
            image="quay.io/humancellatlas/ingest-node-accessioner:{{ .Values.image }}",
            replicas="1",
            api_version="v1",
            gitlab=False,
            rollme=False,
            dns_policy=True,
            values_placeholders=("environment", "image"),
            helmignore=False,
        ),
    )
}


def _chart_yaml(c: _Chart) -> str:
    return (
        f"apiVersion: {c.api_version}\n"
        'appVersion: "1.0"\n'
        "description: A Helm chart for Kubernetes\n"
        f"name: {c.name}\n"
        f"version: {c.version}\n"
    )


def _values_yaml(c: _Chart) -> str:
    lines = [
        f"# Default values for {c.name}.",
        "# Everything below is set per deploy with --set-string (see apps/Makefile).",
    ]
    lines += [f"{key}: provide_through_set_flag" for key in c.values_placeholders]
    return "\n".join(lines) + "\n" + c.values_extra


_GITLAB_ANNOTATIONS = ("app.gitlab.com/app: {{ .Values.gitlab_app }}", "app.gitlab.com/env: {{ .Values.gitlab_env }}")


def _deployment_yaml(c: _Chart) -> str:
    out = ["apiVersion: apps/v1", "kind: Deployment", "metadata:"]
    if c.gitlab:
        out += ["  annotations:"] + [f"    {a}" for a in _GITLAB_ANNOTATIONS]
    else:
        out += ["  annotations: {}"]
    out += [
        "  labels:",
        "    role: ingestion",
        f"  name: {c.name}",
        "  namespace: {{ .Values.environment }}-environment",
        "spec:",
        "  selector:",
        "    matchLabels:",
        f"      app: {c.name}",
        f"  replicas: {c.replicas}",
    ]
    if c.rolling_update:
        out += ["  strategy:", "    type: RollingUpdate"]
    out += ["  template:", "    metadata:", "      labels:", f"        app: {c.name}"]
    pod_annotations = (['rollme: {{ randAlphaNum 5 | quote }}'] if c.rollme else []) + (
        list(_GITLAB_ANNOTATIONS) if c.gitlab else []
    )
    if pod_annotations:
        out += ["      annotations:"] + [f"        {a}" for a in pod_annotations]
    out += ["    spec:"]
    if c.dns_policy:
        out += ["      dnsPolicy: Default"]
    out += ["      containers:", f"      - name: {c.name}", f"        image: {c.image}", "        imagePullPolicy: Always"]
    if c.env or c.secret_env:
        out += ["        env:"]
        for name, value in c.env:
            out += [f"        - name: {name}", f"          value: {value}"]
        for name, secret, key in c.secret_env:
            out += [f"        - name: {name}", "          valueFrom:", "            secretKeyRef:",
                    f"              name: {secret}", f"              key: {key}"]
    if c.port is not None:
        out += ["        ports:"]
        if c.port_name:
            out += [f"        - name: {c.port_name}", f"          containerPort: {c.port}"]
        else:
            out += [f"        - containerPort: {c.port}"]
    if c.claim or c.secret_volume:
        out += ["        volumeMounts:"]
        if c.claim:
            out += [f"        - name: {c.claim.volume}", f"          mountPath: {c.claim.mount_path}"]
        if c.secret_volume:
            out += [f"        - name: {c.secret_volume.volume}", f"          mountPath: {c.secret_volume.mount_path}",
                    "          readOnly: true"]
    for kind, probe in (("livenessProbe", c.liveness), ("readinessProbe", c.readiness)):
        if probe:
            port = probe.port if probe.port is not None else (c.port_name or c.port)
            if port is None:
                raise ValueError(f"{c.name}: a {kind} needs a port")
            out += [f"        {kind}:", "          httpGet:", f"            path: {probe.path}", f"            port: {port}",
                    f"          initialDelaySeconds: {probe.initial_delay}", f"          periodSeconds: {probe.period}"]
    if c.memory or c.cpu:
        out += ["        resources:"]
        for i, section in enumerate(("limits", "requests")):
            out += [f"          {section}:"]
            if c.memory:
                out += [f"            memory: {c.memory[i]}"]
            if c.cpu:
                out += [f"            cpu: {c.cpu[i]}"]
    if c.claim or c.secret_volume:
        out += ["      volumes:"]
        if c.claim:
            out += [f"      - name: {c.claim.volume}", "        persistentVolumeClaim:",
                    f"          claimName: {c.claim.name}"]
        if c.secret_volume:
            v = c.secret_volume
            out += [f"      - name: {v.volume}", "        secret:", f"          secretName: {v.secret}", "          items:"]
            for key, path in v.items:
                out += [f"          - key: {key}", f"            path: {path}"]
    return "\n".join(out) + "\n"


def _claim_yaml(c: _Chart) -> str:
    k = c.claim
    assert k is not None
    out = [
        "apiVersion: v1",
        "kind: PersistentVolumeClaim",
        "metadata:",
        f"  name: {k.name}",
        "  namespace: {{ .Values.environment }}-environment",
        "spec:",
        "  accessModes:",
        *[f"  - {mode}" for mode in k.access_modes],
        f"  storageClassName: {k.storage_class}",
        "  resources:",
        "    requests:",
        f"      storage: {k.size}",
    ]
    return "\n".join(out) + "\n"


def _service_yaml(c: _Chart) -> str:
    s = c.service
    assert s is not None
    out = ["apiVersion: v1", "kind: Service", "metadata:"]
    if s.annotations:
        out += ["  annotations: {}"]
    out += [
        "  labels:",
        f"    role: {s.role}",
        f"  name: {c.name}-service",
        "  namespace: {{ .Values.environment }}-environment",
        "spec:",
        "  ports:",
        f"  - port: {s.port}",
        "    protocol: TCP",
        f"    targetPort: {s.target_port}",
        "  selector:",
        f"    app: {c.name}",
        "  sessionAffinity: None",
        f"  type: {s.type}",
    ]
    return "\n".join(out) + "\n"


def _helpers_tpl(c: _Chart) -> str:
    n = c.name
    return (
        "{{/* vim: set filetype=mustache: */}}\n"
        "{{/* The chart's name, truncated to the 63 characters a DNS label allows. */}}\n"
        f'{{{{- define "{n}.name" -}}}}\n'
        '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}\n'
        "{{- end -}}\n"
        "\n"
        "{{/* Chart name and version, for the chart label. */}}\n"
        f'{{{{- define "{n}.chart" -}}}}\n'
        '{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}\n'
        "{{- end -}}\n"
    )


_HELMIGNORE = """\
# Patterns to ignore when building packages (shell glob, relative path, ! to negate).
.DS_Store
# VCS directories
.git/
.gitignore
.hg/
.svn/
# Backup and editor files
*.swp
*.bak
*.tmp
*~
.project
.idea/
*.tmproj
"""


def _notes(c: _Chart) -> str:
    return f"{c.name[0].upper()}{c.name[1:]} powered by helm charts\n"


# ------------------------------------------------------------------------------------ per-environment files


def _env_values_yaml(env: str) -> str:
    """apps/<env>.yaml: every key the chart templates read besides the --set-string ones."""
    sub = "" if env == "prod" else f"{env}."
    prod = env == "prod"
    ingest = f"api.ingest.{sub}archive.data.humancellatlas.org"
    broker = f"ingest.{sub}archive.data.humancellatlas.org"
    notify = "hca-notifications@ebi.ac.uk" if prod else "hca-notifications-test@ebi.ac.uk"
    ebi = "www" if prod else "wwwdev"
    return f"""\
uploadScheme: https
uploadPort: 443
upload: upload.{sub}archive.data.humancellatlas.org
dss: dss.{sub}data.humancellatlas.org
schema: {"schema.humancellatlas.org" if prod else "schema.staging.data.humancellatlas.org"}
ingest: {ingest}
broker: {broker}
ui: {sub}contribute.data.humancellatlas.org

# auth
gcpProjectWhitelist: "ingest-service-301110.iam.gserviceaccount.com"
svcAuthAudience: https://{"" if prod else "dev."}data.humancellatlas.org/
usrAuthAudience: https://dev.data.humancellatlas.org/

# ui
domainWhitelist: "{ingest},{broker}"
securedEndpoints: '\\/auth\\/.*,\\/user\\/.*,\\/submissionEnvelopes\\/?.*,\\/projects$,\\/(?:biomaterials|processes|protocols|files)\\/.*'
aaiClientId: "sandbox-{env}-client"
aaiAuthority: "https://login.elixir-czech.org/oidc/"

olsUrl: "https://www.ebi.ac.uk/ols4"

# exporter
terraBucketName: {"broad-dsp-monster-hca-prod-ebi-storage" if prod else "broad-dsp-monster-hca-dev-ebi-staging"}
terraBucketPrefix: {env}
terraGcpProject: {"mystical-slate-284720" if prod else "broad-dsp-monster-hca-dev"}
gcsNotificationTopic: {"broad-dsp-monster-hca" if prod else "broad-dsp-monster-hca-dev"}.staging-transfer-notifications.ebi
gcsNotificationSub: ebi-writer

# core
debug: false
notifications:
  smtp:
    host: email-smtp.us-east-1.amazonaws.com
    port: "587"
    wranglerEmails: {notify}
    projectNotificationsFromAddress: {notify}
  amqp:
    sendExchange: ingest.notifications.exchange
    sendRoutingKey: ingest.notifications.new

# archiver
dspUrl: https://submission{"" if prod else "-test"}.ebi.ac.uk
aapUrl: https://{"" if prod else "explore."}api.aai.ebi.ac.uk/auth
aapUser: hca-ingest
aapDomain: {"subs.team-2" if prod else "subs.test-team-21"}
biostudiesApiUrl: https://{ebi}.ebi.ac.uk/biostudies/submissions/api
biostudiesStudyUrl: https://{ebi}.ebi.ac.uk/biostudies/studies/
enaWebinApiUrl: https://{ebi}.ebi.ac.uk/ena/submit/drop-box/submit/
enaFtpHost: webin.ebi.ac.uk
enaFtpDir: {env}

# validator
fastqImage: {FASTQ_VALIDATOR_IMAGES[env]}

# s3 bucket
ingestS3Region: us-east-1
ingestS3BucketName: org-hca-data-archive-upload-{env}
"""


def replicas_file(replicas: dict[str, int], *, trailing_blank_lines: int = 2, comment: str | None = None) -> str:
    """config/replicas/environment_<env> for `replicas` ({VAR: n}, written in that order)."""
    lines = ["#!/usr/bin/env bash", "set -a", "", "# REPLICAS"]
    if comment:
        lines.append(comment)
    lines += [f"{var}={n}" for var, n in replicas.items()]
    lines += [""] * trailing_blank_lines + ["set +a"]
    return "\n".join(lines) + "\n"


def _environment_file(env: str) -> str:
    # prod's FILE_NAME line is not indented in the real file; kept, since parsers must cope with it.
    indent = "" if env == "prod" else "  "
    return f"""\
#!/usr/bin/env bash
set -a

FORCE_REFRESH=TRUE
# Application versions: a branch or a tag that has a matching image on quay.io.
ONTOLOGY_REF={ONTOLOGY_REF}
FASTQ_VALIDATOR_IMAGE={FASTQ_VALIDATOR_IMAGES[env]}

# AWS_PROFILE must name a profile in ~/.aws/config or ~/.aws/credentials with admin access to the account.
AWS_PROFILE=embl-ebi
TF_VAR_ops_role=ingest-devops
# The VPC range must be unique per environment
TF_VAR_vpc_cidr_block={VPC_CIDR_BLOCKS[env]}

# Node size and count
TF_VAR_node_size="t3a.large"
TF_VAR_node_count="2"



#VARIABLES BELOW SHOULD NEVER CHANGE.
if [ ! -z ${{ZSH_VERSION+x}} ]; then
  SOURCE_FILE=${{(%):-%x}}
  FILE_NAME=${{SOURCE_FILE:t}}
  PROJECT_ROOT="$( cd "$( dirname "${{SOURCE_FILE}}" )"/.. && pwd )"
elif [ ! -z ${{BASH_VERSION+x}} ]; then
{indent}FILE_NAME=$(basename $BASH_SOURCE)
  PROJECT_ROOT="$( cd "$( dirname "${{BASH_SOURCE[0]}}" )"/.. && pwd )"
else
  echo "shell not recognized"
  exit 1
fi
DEPLOYMENT_STAGE=${{FILE_NAME#*_}}
KUBECONFIG_PATH=$PROJECT_ROOT/config/cluster-secrets/kubeconfig_${{DEPLOYMENT_STAGE}}
TF_VAR_terraform_key=ingest/eks-${{DEPLOYMENT_STAGE}}.tfstate
TF_VAR_aws_profile=${{AWS_PROFILE}}
TF_VAR_deployment_stage=${{DEPLOYMENT_STAGE}}
{AWS_STS_LINE}
TF_VAR_aws_region=us-east-1
TF_VAR_terraform_bucket=org-humancellatlas-${{TF_VAR_account_id}}-terraform

source $PROJECT_ROOT/config/replicas/environment_${{DEPLOYMENT_STAGE}}

set +a
"""


def _makefile() -> str:
    # Same variables and targets as the real apps/Makefile. INGEST_GRAPH_VALIDATOR_REPLICAS is missing from
    # the real one's list too, so `make deploy-app-ingest-graph-validator` passes an empty replicas value.
    deploy = (
        "\techo \"Deploying $(*) with image tag $(image)\"\n"
        "\t$(MAKE) set-context\n"
        "\thelm package $(*)\n"
        '\t@if [ "$(force-refresh)" == TRUE ]; then kubectl delete deployment $(*) --ignore-not-found=true; fi;\n'
        "\t. ../config/environment_$(deployment-stage) && helm upgrade -f $(deployment-stage).yaml $(*) $(*)"
        " --set-string environment=$(deployment-stage),fastqImage=$(fastq-validator-image),image=$(image),"
        "replicas=$($(*)-replicas),gitlab_app=$(*),gitlab_env=$(deployment-stage) --wait --install\n"
        "\trm *.tgz\n"
    )
    replicas = "\n".join(
        f"{app}-replicas=${{{replicas_var(app)}}}"
        for app in INGEST_APPS
        if replicas_var(app) in REPLICA_VARS and app != "ingest-graph-validator"
    )
    return (
        "SHELL!=which bash\n"
        "deployment-stage = ${DEPLOYMENT_STAGE}\n"
        "force-refresh = ${FORCE_REFRESH}\n"
        "ontology=${ONTOLOGY_REF}\n"
        "\n"
        "# REPLICAS (from config/replicas/environment_<stage>)\n"
        f"{replicas}\n"
        "\n"
        "fastq-validator-image = ${FASTQ_VALIDATOR_IMAGE}\n"
        "\n"
        f"deploy-app-%:\n{deploy}\n"
        "deploy-ontology:\n\t$(MAKE) deploy-app-ontology image=$(ontology)\n\n"
        f"rollout-%:\n{deploy.replace('Deploying', 'Rolling out')}\n"
        "rollout-ontology:\n\t$(MAKE) deploy-app-ontology image=$(ontology)\n\n"
        "set-context:\n"
        "\tkubectx ingest-eks-$(deployment-stage)\n"
        "\tkubens $(deployment-stage)-environment\n"
    )


_README = """\
# ingest-kube-deployment (sandbox)

Helm charts and per-environment settings for the HCA ingest apps on EKS.

* `apps/<app>/`: one chart per app; `apps/<env>.yaml`: per-environment values.
* `config/environment_<env>`: source it before `make -C apps deploy-app-<app> image=<tag>`.
* `config/replicas/environment_<env>`: replica counts per app.
"""

_GITIGNORE = "config/cluster-secrets/\n*.tgz\n.idea/\n"


def render_files(apps: tuple[str, ...] = INGEST_APPS) -> dict[str, str]:
    """Every file of the repository's first commit, {relative path: content}. Pure: no git, no disk."""
    unknown = [a for a in apps if a not in _CHARTS]
    if unknown:
        raise ValueError(f"no chart shape known for {unknown}; known: {list(_CHARTS)}")
    files: dict[str, str] = {
        "README.md": _README,
        ".gitignore": _GITIGNORE,
        "CHANGELOG.md": "# Changelog\n\n",
        "apps/Makefile": _makefile(),
    }
    for env in ENVS:
        files[f"apps/{env}.yaml"] = _env_values_yaml(env)
        files[f"config/environment_{env}"] = _environment_file(env)
        files[f"config/replicas/environment_{env}"] = replicas_file(
            DEFAULT_REPLICAS[env], trailing_blank_lines=1 if env == "dev" else 2
        )
    for app in apps:
        c = _CHARTS[app]
        base = f"apps/{app}"
        files[f"{base}/Chart.yaml"] = _chart_yaml(c)
        files[f"{base}/values.yaml"] = _values_yaml(c)
        if c.helmignore:
            files[f"{base}/.helmignore"] = _HELMIGNORE
        files[f"{base}/templates/NOTES.txt"] = _notes(c)
        files[f"{base}/templates/_helpers.tpl"] = _helpers_tpl(c)
        files[f"{base}/templates/deployment.yaml"] = _deployment_yaml(c)
        if c.service:
            files[f"{base}/templates/service.yaml"] = _service_yaml(c)
        if c.claim:
            files[f"{base}/templates/persistentvolumeclaim.yaml"] = _claim_yaml(c)
    return files


def claim_of(app: str) -> tuple[str, str] | None:
    """(claim name, storageClassName) of the app's PersistentVolumeClaim in the fixture, or None."""
    k = _CHARTS[app].claim
    return (k.name, k.storage_class) if k else None


def secrets_of(app: str) -> dict[str, set[str]]:
    """The Secrets the app's chart reads ({name: keys}), from its env and its Secret volume."""
    c = _CHARTS[app]
    out: dict[str, set[str]] = {}
    for _, secret, key in c.secret_env:
        out.setdefault(secret, set()).add(key)
    if c.secret_volume:
        out.setdefault(c.secret_volume.secret, set()).update(key for key, _ in c.secret_volume.items)
    return out


def service_of(app: str) -> tuple[int, int, str] | None:
    """(port, targetPort, type) of the app's Service in the fixture, or None if its chart has no Service."""
    s = _CHARTS[app].service
    return (s.port, s.target_port, s.type) if s else None


# ------------------------------------------------------------------------------------------------ git side


def _ident() -> str:
    values = dict(arg.split("=", 1) for arg in IDENTITY if "=" in arg)
    return f"{values['user.name']} <{values['user.email']}>"


def _fixed_time() -> str:
    stamp = datetime.fromisoformat(_ENV["GIT_COMMITTER_DATE"].replace("Z", "+00:00"))
    return f"{int(stamp.timestamp())} +0000"


def _fast_import(repo: Path, stream: bytes) -> None:
    """Feed a fast-import stream to git in `repo` (same identity and environment as `gitrepos.git`)."""
    proc = subprocess.run(
        ["git", *IDENTITY, "fast-import", "--quiet", "--done"],
        cwd=repo, env={**_ENV, "HOME": str(repo)}, input=stream, capture_output=True, timeout=_TIMEOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git fast-import failed in {repo}: {proc.stderr.decode(errors='replace').strip()}")


@dataclass
class DeployRepo:
    """The bare remote ("GitHub"; clone URL = str(remote)) and a working clone used to make further commits."""

    remote: Path
    work: Path
    files: dict[str, str] = field(default_factory=dict, repr=False)  # the first commit's content

    @property
    def url(self) -> str:
        return str(self.remote)

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.work, *args, check=check)

    def remote_git(self, *args: str, check: bool = True) -> str:
        return git(self.remote, *args, check=check)

    def head(self, branch: str) -> str:
        """The commit `branch` points at on the remote ("" if the remote has no such branch)."""
        return self.remote_git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)

    def show(self, relpath: str, branch: str = "master") -> str:
        """A file's content on the remote's `branch`."""
        return self.remote_git("show", f"refs/heads/{branch}:{relpath}")

    def _sync(self, branch: str) -> None:
        """Check out `branch` in the work clone exactly as the remote has it (new branches start from master)."""
        self.git("fetch", "-q", "--prune", "origin")
        start = f"origin/{branch}"
        if not self.git("rev-parse", "--verify", "-q", start, check=False):
            start = "origin/master"
        self.git("checkout", "-q", "-B", branch, start)
        self.git("reset", "-q", "--hard", start)

    def commit_file(self, relpath: str, content: str, message: str, *, branch: str = "master") -> str:
        """Write `relpath` on `branch`, commit, push to the remote; return the new commit's sha."""
        self._sync(branch)
        path = self.work / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        self.git("add", "--", relpath)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD")

    def set_replicas(self, env: str, var: str, value: int, *, branch: str | None = None) -> str:
        """Set `var=value` in config/replicas/environment_<env> (added after the last replicas line if absent).

        Commits on `branch` (default: dev for the dev environment, master otherwise), pushes, returns the sha.
        """
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", var):
            raise ValueError(f"not a shell variable name: {var!r}")
        branch = branch or ("dev" if env == "dev" else "master")
        relpath = f"config/replicas/environment_{env}"
        self._sync(branch)
        lines = (self.work / relpath).read_text().splitlines()
        pattern = re.compile(rf"^{var}=")
        hits = [i for i, line in enumerate(lines) if pattern.match(line)]
        if hits:
            for i in hits:
                lines[i] = f"{var}={value}"
        else:
            last = max((i for i, line in enumerate(lines) if re.match(r"^[A-Z0-9_]+_REPLICAS=", line)), default=None)
            at = last + 1 if last is not None else next(i for i, line in enumerate(lines) if line == "set +a")
            lines.insert(at, f"{var}={value}")
        return self.commit_file(relpath, "\n".join(lines) + "\n", f"{env}: set {var}={value}", branch=branch)


def make_deploy_repo(root: Path, *, apps: tuple[str, ...] = INGEST_APPS, history: int = 3) -> DeployRepo:
    """`<root>/remotes/ingest-kube-deployment.git` (bare, HEAD master) and `<root>/ingest-kube-deployment-work`.

    master: the first commit (all of `render_files(apps)`) plus `history` changelog commits.
    dev: master plus one dev-only commit (a comment in config/replicas/environment_dev; no value changes).
    The work clone is left on master.
    """
    files = render_files(apps)
    remote = root / "remotes" / f"{REPO_NAME}.git"
    work = root / f"{REPO_NAME}-work"
    remote.mkdir(parents=True)
    git(remote, "init", "-q", "--bare", "-b", "master")
    git(root, "clone", "-q", str(remote), str(work))
    repo = DeployRepo(remote, work, files)
    repo.git("config", "user.name", _ident().split(" <")[0])
    repo.git("config", "user.email", _ident().split(" <")[1].rstrip(">"))
    repo.git("checkout", "-q", "-B", "master")
    for rel, content in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "Helm charts and environment settings for the ingest apps")
    changelog = work / "CHANGELOG.md"
    for n in range(1, history + 1):
        with changelog.open("a") as handle:
            handle.write(f"- change {n}: routine maintenance\n")
        repo.git("commit", "-q", "-am", f"Changelog: change {n}")
    repo.git("push", "-q", "origin", "master")
    repo.git("checkout", "-q", "-b", "dev")
    replicas_dev = work / "config/replicas/environment_dev"
    replicas_dev.write_text(
        replicas_file(DEFAULT_REPLICAS["dev"], trailing_blank_lines=1, comment=DEV_ONLY_COMMENT)
    )
    repo.git("commit", "-q", "-am", "dev: note on replica counts")
    repo.git("push", "-q", "origin", "dev")
    repo.git("checkout", "-q", "master")
    return repo


def add_history(repo: DeployRepo, commits: int, *, branch: str = "master") -> None:
    """Append `commits` small commits to `branch` on the remote in one `git fast-import` run, then sync work.

    Each commit rewrites `history.log` with one line, so the stream stays linear in size (2,000 commits
    take well under a second). The branch starts from master if the remote does not have it yet.
    """
    if commits <= 0:
        return
    parent = repo.head(branch) or repo.head("master")
    if not parent:
        raise RuntimeError(f"{repo.remote} has neither {branch!r} nor master")
    who, when = _ident(), _fixed_time()
    chunks: list[bytes] = [b"feature done\n"]
    for n in range(1, commits + 1):
        message = f"history: change {n} of {commits}\n".encode()
        content = f"change {n} of {commits} on {branch}\n".encode()
        chunks.append(
            b"commit refs/heads/%s\n" % branch.encode()
            + b"author %s %s\ncommitter %s %s\n" % (who.encode(), when.encode(), who.encode(), when.encode())
            + b"data %d\n%s" % (len(message), message)
            + (b"from %s\n" % parent.encode() if n == 1 else b"")
            + b"M 100644 inline history.log\ndata %d\n%s\n" % (len(content), content)
        )
    chunks.append(b"done\n")
    _fast_import(repo.remote, b"".join(chunks))
    current = repo.git("rev-parse", "--abbrev-ref", "HEAD")
    repo._sync(current)
