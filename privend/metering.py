"""The metering collector's Kubernetes objects and IAM policy, as plain dicts.

Metering runs the CloudWatch agent as our own workload in namespace
`privend-metering`, one single-replica Deployment per CloudWatch metrics
namespace (usage for billing, engine for alarms and autoscaling), with the
configurations `privend.billing.agent_config.render_agent_config` renders.
It is not the amazon-cloudwatch-observability add-on: that chart runs its
agents with `hostNetwork: true`, so their scrapes come from node addresses,
which the endpoints' NetworkPolicies cannot admit without admitting every
tenant's pods (the VPC CNI gives pods addresses in the node subnets). The
collector's pods sit on the pod network, and `privend.render.network_policies`
admits exactly them (namespace and pod labels) on the engine port.

Pure functions: the MeteringCollector component turns these into resources, and
the tests validate them against the real OpenAPI schemas with no Pulumi.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

import yaml

from privend.billing.agent_config import render_agent_config
from privend.config import EnvironmentConfig
from privend.nodes import POOL_LABEL, SYSTEM_POOL
from privend.render import (
    METERING_COLLECTOR_LABELS,
    METERING_NAMESPACE,
    RESTRICTED_POD_SECURITY,
    restricted_container_security,
)
from privend.versions import CLOUDWATCH_AGENT_IMAGE

NAMESPACE = METERING_NAMESPACE
SERVICE_ACCOUNT = "metering-collector"
CLUSTER_ROLE = "privend-metering-collector"
PROMETHEUS_CONFIG_MAP = "prometheus-scrape"
METRICS_LABEL = "privend.io/metrics"  # which agent a pod runs: usage or engine
CONFIG_HASH_ANNOTATION = "privend.io/config-sha256"
LABELS = {"app.kubernetes.io/managed-by": "privend", **METERING_COLLECTOR_LABELS}

# In a container the agent translates every JSON file of this directory (and reads
# CW_CONFIG_CONTENT only when the directory holds none): start-amazon-cloudwatch-agent
# with RUN_IN_CONTAINER=True, which the image sets. AWS's own Prometheus manifests mount
# their agent ConfigMap here too.
AGENT_CONFIG_DIR = "/etc/cwagentconfig"
AGENT_CONFIG_FILE = "cwagentconfig.json"
# The root filesystem is read-only; the agent writes its translated configuration
# (amazon-cloudwatch-agent.toml, env-config.json) under etc, its pid file under var and
# state under logs. These emptyDirs shadow what the image ships in those directories,
# which the containerised agent does not read (it is given no --config); confirm on a
# real cluster when the image pin moves.
WRITABLE_DIRS = {
    "tmp": "/tmp",
    "agent-etc": "/opt/aws/amazon-cloudwatch-agent/etc",
    "agent-var": "/opt/aws/amazon-cloudwatch-agent/var",
    "agent-logs": "/opt/aws/amazon-cloudwatch-agent/logs",
}
RUN_AS = 10001  # the image sets no user; any non-root uid will do
RESOURCES = {
    "requests": {"cpu": "200m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
LOGS_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]


def agent_configs(cfg: EnvironmentConfig, cluster_name: str) -> dict[str, Any]:
    """The rendered agent configurations: {"prometheus": ..., "agents": {"usage": ..., "engine": ...}}."""
    return render_agent_config(cfg.environment, cluster_name=cluster_name, region=cfg.region)


def _prometheus(agent: dict[str, Any]) -> dict[str, Any]:
    return agent["logs"]["metrics_collected"]["prometheus"]


def metrics_namespaces(rendered: dict[str, Any]) -> dict[str, str]:
    """Agent name -> the CloudWatch namespace its EMF processor publishes to."""
    return {name: _prometheus(agent)["emf_processor"]["metric_namespace"]
            for name, agent in sorted(rendered["agents"].items())}


def log_group_names(rendered: dict[str, Any]) -> dict[str, str]:
    """Agent name -> the log group its EMF records go to (CloudWatch Logs turns them into metrics)."""
    return {name: _prometheus(agent)["log_group_name"] for name, agent in sorted(rendered["agents"].items())}


def prometheus_config_path(rendered: dict[str, Any]) -> str:
    """Where every agent expects the scrape configuration; the ConfigMap is mounted there."""
    paths = {_prometheus(agent)["prometheus_config_path"] for agent in rendered["agents"].values()}
    if len(paths) != 1:
        raise ValueError(f"agents disagree on prometheus_config_path: {sorted(paths)}")
    return paths.pop()


def agent_config_map_name(agent: str) -> str:
    return f"agent-{agent}"


def deployment_name(agent: str) -> str:
    return f"collector-{agent}"


def pod_labels(agent: str) -> dict[str, str]:
    return {**LABELS, METRICS_LABEL: agent}


def _meta(name: str, **extra) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": dict(LABELS), **extra}


def namespace() -> dict[str, Any]:
    labels = {**LABELS, **RESTRICTED_POD_SECURITY}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}


def ingress_deny() -> dict[str, Any]:
    """Nothing needs to reach the collector: it only scrapes out and publishes to AWS."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta("deny-ingress"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def service_account(role_arn: str) -> dict[str, Any]:
    annotations = {
        "eks.amazonaws.com/role-arn": role_arn,
        # STS through the VPC's regional interface endpoint, not the global one.
        "eks.amazonaws.com/sts-regional-endpoints": "true",
    }
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(SERVICE_ACCOUNT, annotations=annotations)}


def cluster_role() -> dict[str, Any]:
    """Read-only discovery of the engine pods, cluster-wide: endpoint namespaces come and go."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE, "labels": dict(LABELS)},
        "rules": [{"apiGroups": [""], "resources": ["pods", "endpoints", "services", "namespaces"],
                   "verbs": ["get", "list", "watch"]}],
    }


def cluster_role_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE, "labels": dict(LABELS)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
    }


def config_maps(rendered: dict[str, Any]) -> list[dict[str, Any]]:
    """One ConfigMap per agent configuration, and one for the scrape configuration they share."""
    scrape_file = posixpath.basename(prometheus_config_path(rendered))
    maps = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(PROMETHEUS_CONFIG_MAP),
        "data": {scrape_file: yaml.safe_dump(rendered["prometheus"], sort_keys=False)},
    }]
    for name, agent in sorted(rendered["agents"].items()):
        maps.append({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(agent_config_map_name(name)),
            "data": {AGENT_CONFIG_FILE: json.dumps(agent, indent=2, sort_keys=True) + "\n"},
        })
    return maps


def _config_hash(maps: list[dict[str, Any]], agent: str) -> str:
    # The agent reads its configuration once, at start: a change must roll the pod.
    wanted = {PROMETHEUS_CONFIG_MAP, agent_config_map_name(agent)}
    data = {m["metadata"]["name"]: m["data"] for m in maps if m["metadata"]["name"] in wanted}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def deployment(agent: str, rendered: dict[str, Any], image: str = CLOUDWATCH_AGENT_IMAGE) -> dict[str, Any]:
    scrape_path = prometheus_config_path(rendered)
    region = rendered["agents"][agent]["agent"]["region"]
    container = {
        "name": "cloudwatch-agent",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            # Credentials and mode from IRSA: pods cannot reach the instance metadata service
            # (hop limit 1), so the agent must not try to detect EC2 through it.
            {"name": "RUN_WITH_IRSA", "value": "True"},
            {"name": "AWS_REGION", "value": region},
            # Opt out of the agent's product-experience data, as the engines opt out of theirs.
            {"name": "CWAGENT_USAGE_DATA", "value": "false"},
        ],
        "resources": RESOURCES,
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "agent-config", "mountPath": AGENT_CONFIG_DIR, "readOnly": True},
            {"name": "prometheus-config", "mountPath": posixpath.dirname(scrape_path), "readOnly": True},
            *({"name": volume, "mountPath": path} for volume, path in WRITABLE_DIRS.items()),
        ],
    }
    volumes = [
        {"name": "agent-config", "configMap": {"name": agent_config_map_name(agent),
                                               "items": [{"key": AGENT_CONFIG_FILE, "path": AGENT_CONFIG_FILE}]}},
        {"name": "prometheus-config", "configMap": {"name": PROMETHEUS_CONFIG_MAP, "items": [
            {"key": posixpath.basename(scrape_path), "path": posixpath.basename(scrape_path)}]}},
        *({"name": volume, "emptyDir": {"sizeLimit": "64Mi"}} for volume in WRITABLE_DIRS),
    ]
    pod = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": True,  # pod discovery reads the Kubernetes API
        "hostNetwork": False,  # scrapes must come from a pod address the endpoints' policies can admit
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "terminationGracePeriodSeconds": 60,  # room for the last flush to CloudWatch Logs
        "containers": [container],
        "volumes": volumes,
    }
    labels = pod_labels(agent)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(deployment_name(agent)),
        "spec": {
            # Exactly one replica: every agent publishes the deltas of the token counters it
            # scrapes, so two replicas would bill every token twice. Recreate, not a rolling
            # update, for the same reason: the new pod starts only after the old one stopped.
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {CONFIG_HASH_ANNOTATION: _config_hash(config_maps(rendered), agent)}},
                "spec": pod,
            },
        },
    }


def agent_policy(rendered: dict[str, Any], *, region: str, account_id: str) -> dict[str, Any]:
    """What the collector may do in AWS: publish to the metering namespaces, write its own log groups."""
    log_groups = [f"arn:aws:logs:{region}:{account_id}:log-group:{name}" for name in log_group_names(rendered).values()]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishMeteringMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",  # PutMetricData has no resource type; the namespace condition scopes it
                "Condition": {"StringEquals": {"cloudwatch:namespace": sorted(metrics_namespaces(rendered).values())}},
            },
            {
                # EMF records reach CloudWatch through these log groups (and their streams).
                "Sid": "WriteMeteringLogGroups",
                "Effect": "Allow",
                "Action": LOGS_ACTIONS,
                "Resource": sorted(log_groups + [f"{arn}:*" for arn in log_groups]),
            },
        ],
    }


def render_collector(cfg: EnvironmentConfig, cluster_name: str, *,
                     role_arn: str = "arn:aws:iam::123456789012:role/offline") -> list[dict[str, Any]]:
    """All Kubernetes objects of the metering collector, in apply order."""
    rendered = agent_configs(cfg, cluster_name)
    objects = [namespace(), ingress_deny(), service_account(role_arn), cluster_role(), cluster_role_binding()]
    objects += config_maps(rendered)
    objects += [deployment(name, rendered) for name in sorted(rendered["agents"])]
    return objects
