"""Render an endpoint's Kubernetes objects as plain dicts.

Pure functions of the endpoint spec and the environment config: the Endpoint
component turns these into Pulumi resources, `privend export manifests` writes
them as YAML, and the tests validate them against the real OpenAPI schemas.
Secret values never pass through here: Secrets are rendered without data, and
the component fills them from Pulumi secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import yaml

from privend import gateway
from privend.autoscaling import QUEUE_METRIC, scaling_policy
from privend.billing.suspension import SUSPENDED_ANNOTATIONS
from privend.catalog import EngineImage, engine_catalog, gpu_catalog
from privend.config import EnvironmentConfig
from privend.naming import EndpointNames, endpoint_names
from privend.netplan import plan_subnets
from privend.nodes import GPU_RESOURCE, POOL_LABEL, SYSTEM_POOL, TENANT_LABEL, gpu_pool_taints
from privend.spec import EndpointSpec
from privend.versions import ENVOY_IMAGE

SERVICE_PORT = 80
LISTENER_PORT = 443  # the load balancer's TLS listener customers reach through PrivateLink
GATEWAY_PORT = gateway.GatewayPorts().listener  # what the load balancer's targets (the gateway pods) listen on
GATEWAY_METRICS_PORT = gateway.GatewayPorts().metrics
GATEWAY_REPLICAS = 2
GATEWAY_CONFIG = "gateway-config"  # ConfigMap: envoy.yaml, no key material
GATEWAY_KEYS_SECRET = "gateway-keys"  # Secret: routes.yaml, the key routes, filled from Pulumi secrets
# A high UID like the engine's (checkov CKV_K8S_40): no user of the node. The official
# image's files are world-readable, so Envoy runs as any UID; its config is mounted read-only.
GATEWAY_UID = 10101
GATEWAY_CPU_LIMIT = 1
GATEWAY_MEMORY_GIB_LIMIT = 1
GATEWAY_SERVICE = "gateway"
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR_LABELS = {"app.kubernetes.io/name": "keda-operator"}
MAX_CONCURRENT_REQUESTS = 128
MODEL_LOAD_SECONDS = 30 * 60  # the startup probe allows half an hour to download and load weights
# The metering collector (privend.metering) scrapes the engines from this namespace, as pods with
# these labels on the pod network: the only peer allow-metrics-scraper admits.
METERING_NAMESPACE = "privend-metering"
METERING_COLLECTOR_LABELS = {"app.kubernetes.io/name": "cloudwatch-agent",
                             "app.kubernetes.io/component": "metering-collector"}
METADATA_SERVICE = "169.254.169.254/32"
HF_TOKEN_SECRET = "hf-token"
# A replica gets its GPUs' share of the node's CPU and memory, less room for
# daemonsets, capped at what an engine uses: more would only strand capacity.
SYSTEM_HEADROOM = Decimal("0.8")
CPU_PER_GPU_MAX = 8
MEMORY_GIB_PER_GPU_MAX = 48
USAGE_NAMESPACE = "PrivateEndpoint/Usage"
ENGINE_NAMESPACE = "PrivateEndpoint/Engine"


@dataclass(frozen=True)
class RenderContext:
    spec: EndpointSpec
    cfg: EnvironmentConfig
    names: EndpointNames
    engine: EngineImage

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": self.spec.engine,
            "app.kubernetes.io/instance": self.spec.name,
            "app.kubernetes.io/managed-by": "privend",
            "privend.io/environment": self.cfg.environment,
            TENANT_LABEL: self.spec.tenant,
            "privend.io/endpoint": self.spec.name,
        }

    @property
    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/instance": self.spec.name, "privend.io/endpoint": self.spec.name}

    @property
    def gateway_labels(self) -> dict[str, str]:
        # A different instance label from the engine's: the engine Service never selects gateway pods.
        return {**self.labels, "app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "gateway",
                "app.kubernetes.io/instance": f"{self.spec.name}-gateway"}

    @property
    def gateway_selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/instance": f"{self.spec.name}-gateway", "privend.io/endpoint": self.spec.name}

    def meta(self, name: str, **extra) -> dict:
        return {"name": name, "namespace": self.names.namespace, "labels": self.labels, **extra}


def context(spec: EndpointSpec, cfg: EnvironmentConfig) -> RenderContext:
    return RenderContext(spec, cfg, endpoint_names(cfg.environment, spec.name), engine_catalog().get(spec.engine))


def image_reference(spec: EndpointSpec, engine: EngineImage) -> str:
    """The stock engine image, or the endpoint's baked image; both pinned by digest."""
    return spec.image if spec.baked else engine.reference


def replica_resources(spec: EndpointSpec, cfg: EnvironmentConfig) -> dict:
    """CPU and memory per replica: the GPUs' share of the smallest node type, minus system headroom."""
    pool = cfg.pool(spec.pool)
    node = min((gpu_catalog().get(t) for t in pool.instance_types), key=lambda n: n.vcpus / n.gpus)
    share = Decimal(spec.gpus_per_replica) / node.gpus * SYSTEM_HEADROOM
    cpu = max(1, min(CPU_PER_GPU_MAX * spec.gpus_per_replica, int((node.vcpus * share).to_integral_value(ROUND_FLOOR))))
    memory_gib = max(4, min(MEMORY_GIB_PER_GPU_MAX * spec.gpus_per_replica,
                            int((node.memory_gib * share).to_integral_value(ROUND_FLOOR))))
    gpus = str(spec.gpus_per_replica)
    return {
        "requests": {"cpu": str(cpu), "memory": f"{memory_gib}Gi", GPU_RESOURCE: gpus},
        "limits": {"cpu": str(cpu), "memory": f"{memory_gib}Gi", GPU_RESOURCE: gpus},
    }


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def tgi_environment(spec: EndpointSpec, engine: EngineImage, cache_dir: str, with_hf_token: bool) -> list[dict]:
    """TGI is configured only through the launcher's documented environment variables."""
    env = [
        {"name": "MODEL_ID", "value": spec.model},
        {"name": "REVISION", "value": spec.revision},
        {"name": "NUM_SHARD", "value": str(spec.gpus_per_replica)},
        {"name": "MAX_INPUT_TOKENS", "value": str(spec.max_input_tokens)},
        {"name": "MAX_TOTAL_TOKENS", "value": str(spec.max_total_tokens)},
        {"name": "MAX_BATCH_PREFILL_TOKENS", "value": str(max(spec.max_input_tokens, 4096))},
        {"name": "MAX_CONCURRENT_REQUESTS", "value": str(MAX_CONCURRENT_REQUESTS)},
        {"name": "PORT", "value": str(engine.port)},
        {"name": "HUGGINGFACE_HUB_CACHE", "value": cache_dir},
        # TGI reports usage to Hugging Face unless told otherwise; a private endpoint must not.
        {"name": "USAGE_STATS", "value": "off"},
        # No API_KEY: the gateway authenticates every request, and only the gateway reaches the engine.
    ]
    env.insert(3, {"name": "QUANTIZE", "value": spec.quantize} if spec.quantize else {"name": "DTYPE", "value": spec.dtype or "bfloat16"})
    if with_hf_token:
        env.append(_secret_env("HF_TOKEN", HF_TOKEN_SECRET, "HF_TOKEN"))
    return env


def vllm_container_args(spec: EndpointSpec, engine: EngineImage, cache_dir: str) -> tuple[list[str], list[dict]]:
    """vLLM takes the same spec through its own flags."""
    args = [
        "--model", spec.model,
        "--revision", spec.revision,
        "--tensor-parallel-size", str(spec.gpus_per_replica),
        "--max-model-len", str(spec.max_total_tokens),
        "--max-num-seqs", str(MAX_CONCURRENT_REQUESTS),
        "--port", str(engine.port),
        "--download-dir", cache_dir,
    ]
    args += ["--quantization", spec.quantize] if spec.quantize else ["--dtype", spec.dtype or "bfloat16"]
    env = [
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
        {"name": "HF_HOME", "value": cache_dir},
    ]
    return args, env


# Pod Security Standard "restricted", enforced, not only audited: the labels of every namespace privend makes.
RESTRICTED_POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def restricted_container_security(**extra: object) -> dict:
    """A container's securityContext under the restricted standard (plus `extra`, e.g. runAsUser)."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, **extra,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def namespace(ctx: RenderContext) -> dict:
    labels = {**ctx.labels, **RESTRICTED_POD_SECURITY}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ctx.names.namespace, "labels": labels}}


def network_policies(ctx: RenderContext, hub_egress: bool) -> list[dict]:
    port = ctx.engine.port
    lb_cidrs = [str(s.load_balancers) for s in plan_subnets(ctx.cfg.vpc_cidr, ctx.cfg.az_count)]
    pods = {"matchLabels": ctx.selector}
    gateway_pods = {"matchLabels": ctx.gateway_selector}

    def policy(name: str, spec: dict) -> dict:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": ctx.meta(name), "spec": spec}

    policies = [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        # Only the endpoint's own load balancer reaches the gateway: NLB IP targets see
        # traffic from the load balancer subnets, never from another namespace.
        policy("allow-serving", {
            "podSelector": gateway_pods, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": c}} for c in lb_cidrs],
                         "ports": [{"protocol": "TCP", "port": GATEWAY_PORT}]}],
        }),
        # The engine takes requests only from its own gateway (pod labels, in this namespace).
        policy("allow-gateway-to-engine", {
            "podSelector": pods, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": gateway_pods}], "ports": [{"protocol": "TCP", "port": port}]}],
        }),
        policy("allow-gateway-egress-to-engine", {
            "podSelector": gateway_pods, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": pods}], "ports": [{"protocol": "TCP", "port": port}]}],
        }),
        # KEDA's operator reads the gateway's pending requests to wake the engine from zero.
        policy("allow-autoscaler-to-gateway-metrics", {
            "podSelector": gateway_pods, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": KEDA_NAMESPACE}},
                                   "podSelector": {"matchLabels": dict(KEDA_OPERATOR_LABELS)}}],
                         "ports": [{"protocol": "TCP", "port": GATEWAY_METRICS_PORT}]}],
        }),
        # Metering: only the collector's pods (namespace AND pod labels, in one peer) reach the
        # engine port. They are not host-networked, so the VPC CNI's policy agent sees pod
        # addresses it can match; node addresses could not be admitted without admitting every
        # tenant's pods, which share the node subnets.
        policy("allow-metrics-scraper", {
            "podSelector": pods, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": METERING_NAMESPACE}},
                                   "podSelector": {"matchLabels": dict(METERING_COLLECTOR_LABELS)}}],
                         "ports": [{"protocol": "TCP", "port": port}]}],
        }),
        policy("allow-dns", {
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}],
        }),
    ]
    if hub_egress:
        # Weights come from the model hub over HTTPS; nothing inside the VPC and
        # not the instance metadata service.
        policies.append(policy("allow-model-hub", {
            "podSelector": pods, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [ctx.cfg.vpc_cidr, METADATA_SERVICE]}}],
                        "ports": [{"protocol": "TCP", "port": 443}]}],
        }))
    return policies


def resource_quota(ctx: RenderContext) -> dict:
    per = replica_resources(ctx.spec, ctx.cfg)["limits"]
    # One replica more than MAX so a rolling update can surge; the gateway's replicas and their surge on top.
    engine_pods = ctx.spec.max_replicas + 1
    gateway_pods = GATEWAY_REPLICAS + 1
    pods = engine_pods + gateway_pods
    cpu = int(per["cpu"]) * engine_pods + GATEWAY_CPU_LIMIT * gateway_pods + 1
    memory = int(per["memory"].removesuffix("Gi")) * engine_pods + GATEWAY_MEMORY_GIB_LIMIT * gateway_pods + 1
    return {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": ctx.meta("endpoint-quota"),
        "spec": {"hard": {
            "pods": str(pods),
            f"requests.{GPU_RESOURCE}": str(ctx.spec.gpus_per_replica * pods),
            "requests.cpu": str(cpu), "limits.cpu": str(cpu),
            "requests.memory": f"{memory}Gi", "limits.memory": f"{memory}Gi",
            "services.loadbalancers": "0", "services.nodeports": "0",
        }},
    }


def limit_range(ctx: RenderContext) -> dict:
    return {
        "apiVersion": "v1", "kind": "LimitRange", "metadata": ctx.meta("endpoint-limits"),
        "spec": {"limits": [{
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }]},
    }


def service_account(ctx: RenderContext) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": ctx.meta(ctx.names.service_account),
            "automountServiceAccountToken": False}


def secret_shell(ctx: RenderContext, name: str, key: str) -> dict:
    """A Secret without its value: the component fills `stringData` from a Pulumi secret."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": ctx.meta(name, annotations={"privend.io/value": f"set from a Pulumi secret ({key})"})}


def deployment(ctx: RenderContext, with_hf_token: bool) -> dict:
    spec, engine = ctx.spec, ctx.engine
    baked = spec.baked
    cache_dir = "/weights" if baked else "/data"
    volume_mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    container = {
        "name": "engine",
        "image": image_reference(spec, engine),
        "ports": [{"name": "http", "containerPort": engine.port, "protocol": "TCP"}],
        "resources": replica_resources(spec, ctx.cfg),
        "startupProbe": {"httpGet": {"path": engine.health_path, "port": "http"}, "periodSeconds": 10,
                         "failureThreshold": MODEL_LOAD_SECONDS // 10},
        "readinessProbe": {"httpGet": {"path": engine.health_path, "port": "http"}, "periodSeconds": 10,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": engine.health_path, "port": "http"}, "periodSeconds": 30,
                          "failureThreshold": 4, "timeoutSeconds": 5},
        "securityContext": restricted_container_security(runAsUser=ENGINE_UID, runAsGroup=ENGINE_UID),
        "volumeMounts": volume_mounts,
    }
    if spec.engine == "tgi":
        container["env"] = tgi_environment(spec, engine, cache_dir, with_hf_token and not baked)
    else:
        args, env = vllm_container_args(spec, engine, cache_dir)
        container["args"] = args
        container["env"] = env + ([_secret_env("HF_TOKEN", HF_TOKEN_SECRET, "HF_TOKEN")] if with_hf_token and not baked else [])
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if not baked:
        volumes.append({"name": "model-cache", "emptyDir": {"sizeLimit": "200Gi"}})
        volume_mounts.append({"name": "model-cache", "mountPath": cache_dir})
    if spec.gpus_per_replica > 1:
        # Shards talk through shared memory; the container default of 64 MiB is far too small.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}})
        volume_mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    tenant = spec.tenant if spec.tier == "dedicated" else None
    node_selector = {POOL_LABEL: spec.pool}
    if tenant:
        node_selector[TENANT_LABEL] = tenant
    pod = {
        "serviceAccountName": ctx.names.service_account,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": ENGINE_UID, "runAsGroup": ENGINE_UID,
                            "fsGroup": ENGINE_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": node_selector,
        "tolerations": [t.toleration() for t in gpu_pool_taints(tenant)],
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": ctx.meta(ctx.names.deployment),
        "spec": {
            # KEDA owns the replica count after creation; start at MIN.
            "replicas": spec.min_replicas,
            "selector": {"matchLabels": ctx.selector},
            # No surge: a surge replica would need GPUs the pool may not have.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": ctx.labels}, "spec": pod},
        },
    }


def service(ctx: RenderContext) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": ctx.meta(ctx.names.service),
        "spec": {"type": "ClusterIP", "selector": ctx.selector,
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def disruption_budget(ctx: RenderContext) -> dict:
    # maxUnavailable, not minAvailable: with one replica, minAvailable 1 would block every node drain.
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": ctx.meta("engine"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": ctx.selector}},
    }


def scaled_object(ctx: RenderContext, load_balancer_arn_suffix: str | None = None) -> dict:
    spec = ctx.spec
    policy = scaling_policy(spec.min_replicas, spec.max_replicas)
    dims = "Environment;Tenant;Endpoint"
    values = f"{ctx.cfg.environment};{spec.tenant};{spec.name}"
    triggers = [{
        "type": "aws-cloudwatch",
        "name": "queue-depth",
        "metadata": {
            "namespace": ENGINE_NAMESPACE, "metricName": QUEUE_METRIC,
            "dimensionName": dims, "dimensionValue": values,
            "metricStat": "Average", "metricStatPeriod": str(policy.metric_period_seconds),
            "targetMetricValue": str(policy.queue_target), "minMetricValue": "0",
            "awsRegion": ctx.cfg.region, "identityOwner": "operator",
        },
    }]
    if spec.scale_to_zero:
        # With no replica there is no queue to measure: requests the gateway holds are what wakes
        # the endpoint up. Through the gateway Service KEDA reads one gateway replica at a time:
        # any held request there is enough to activate (activation at > 0).
        url = (f"http://{GATEWAY_SERVICE}.{ctx.names.namespace}.svc.cluster.local:{GATEWAY_METRICS_PORT}"
               f"/stats?filter=^{gateway.PENDING_REQUESTS_STAT}$&format=json")
        triggers.append({
            "type": "metrics-api",
            "name": "gateway-pending-requests",
            "metadata": {"url": url, "format": "json", "valueLocation": "stats.0.value",
                         "targetValue": str(policy.queue_target), "activationTargetValue": "0"},
        })
    metadata = ctx.meta("engine")
    if spec.suspended:
        # Billing's hard cap: KEDA holds the Deployment at zero while this annotation is present.
        metadata["annotations"] = dict(SUSPENDED_ANNOTATIONS)
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ctx.names.deployment},
            "minReplicaCount": policy.min_replicas,
            "maxReplicaCount": policy.max_replicas,
            "pollingInterval": policy.polling_interval_seconds,
            "cooldownPeriod": policy.cooldown_seconds,
            "triggers": triggers,
        },
    }


def target_group_binding(ctx: RenderContext, target_group_arn: str) -> dict:
    return {
        "apiVersion": "elbv2.k8s.aws/v1beta1", "kind": "TargetGroupBinding", "metadata": ctx.meta("engine"),
        "spec": {
            "serviceRef": {"name": GATEWAY_SERVICE, "port": SERVICE_PORT},
            "targetGroupARN": target_group_arn,
            "targetType": "ip",
        },
    }


# The engine's user and group, here and in images/*/Dockerfile: a high UID (at least 10000, checkov's
# CKV_K8S_40) so that it never matches a user of the node, should a container ever escape.
ENGINE_UID = 10001

# What stands in, in objects rendered without a deployed stack, for values only AWS assigns.
OFFLINE_TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:offline:target-group"
OFFLINE_LB_ARN_SUFFIX = "net/offline/0"
OFFLINE_PLACEHOLDERS = {OFFLINE_TARGET_GROUP_ARN: "the target group ARN",
                        OFFLINE_LB_ARN_SUFFIX: "the load balancer dimension"}


def render_endpoint(spec: EndpointSpec, cfg: EnvironmentConfig, *, with_hf_token: bool = True,
                    target_group_arn: str = OFFLINE_TARGET_GROUP_ARN,
                    load_balancer_arn_suffix: str | None = OFFLINE_LB_ARN_SUFFIX) -> list[dict]:
    """All Kubernetes objects of one endpoint, in apply order."""
    ctx = context(spec, cfg)
    hub = not spec.baked
    objects = [namespace(ctx), *network_policies(ctx, hub), resource_quota(ctx), limit_range(ctx), service_account(ctx)]
    objects.append(secret_shell(ctx, GATEWAY_KEYS_SECRET, gateway.ROUTES_FILE))
    if with_hf_token and hub:
        objects.append(secret_shell(ctx, HF_TOKEN_SECRET, "HF_TOKEN"))
    objects += [deployment(ctx, with_hf_token), service(ctx), disruption_budget(ctx),
                gateway_config_map(ctx), gateway_deployment(ctx), gateway_service(ctx), gateway_disruption_budget(ctx),
                scaled_object(ctx, load_balancer_arn_suffix), target_group_binding(ctx, target_group_arn)]
    return objects


# ----------------------------------------------------------------------------- the gateway (front door)

def gateway_limits(spec: EndpointSpec) -> gateway.GatewayLimits:
    return gateway.GatewayLimits(
        cold_start_wait_seconds=spec.cold_start_wait_seconds,
        max_request_body_bytes=spec.max_request_body_bytes,
        max_request_headers_kib=spec.max_request_headers_kib,
        idle_timeout_seconds=spec.idle_timeout_seconds,
        response_timeout_seconds=spec.response_timeout_seconds,
        max_concurrent_requests=spec.max_concurrent_requests,
    )


def gateway_bootstrap(ctx: RenderContext) -> dict:
    """The gateway's envoy.yaml: the engine by its Service name, the keys where the Secret is mounted."""
    engine_host = f"{ctx.names.service}.{ctx.names.namespace}.svc.cluster.local"
    return gateway.bootstrap(gateway_limits(ctx.spec), engine_host, SERVICE_PORT,
                             node=f"{ctx.cfg.environment}-{ctx.spec.name}")


def gateway_key_routes(spec: EndpointSpec, secrets: dict[str, str], version: str = "1") -> dict:
    """routes.yaml for the keys the spec lists, with the secrets the stack holds (key material: a Secret only)."""
    keys = [gateway.KeyRoute(k.name, secrets[k.name], k.rate_limit_per_minute)
            for k in spec.api_keys if k.name in secrets]
    return gateway.key_routes(keys, gateway_limits(spec), version)


def gateway_config_map(ctx: RenderContext) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": ctx.meta(GATEWAY_CONFIG, labels=ctx.gateway_labels),
            "data": {"envoy.yaml": yaml.safe_dump(gateway_bootstrap(ctx), sort_keys=True)}}


def gateway_deployment(ctx: RenderContext) -> dict:
    probe = {"httpGet": {"path": gateway.READY_PATH, "port": "http"}, "periodSeconds": 5}
    container = {
        "name": "envoy",
        "image": ENVOY_IMAGE,
        # The binary itself, not the image's entrypoint script (which may switch users).
        "command": ["envoy"],
        "args": ["-c", f"{gateway.CONFIG_DIR}/envoy.yaml", *gateway.ENVOY_ARGS, "--log-level", "warn"],
        "workingDir": gateway.CONFIG_DIR,  # envoy.yaml names the keys directory relative to it
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": GATEWAY_METRICS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                      "limits": {"cpu": str(GATEWAY_CPU_LIMIT), "memory": f"{GATEWAY_MEMORY_GIB_LIMIT}Gi"}},
        "startupProbe": {**probe, "failureThreshold": 24},
        "readinessProbe": {**probe, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 3},
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": gateway.CONFIG_DIR, "readOnly": True},
            # A directory mount, not subPath: the kubelet's atomic swap of the Secret is what Envoy watches.
            {"name": "keys", "mountPath": f"{gateway.CONFIG_DIR}/{gateway.KEYS_DIR}", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spread = {"labelSelector": {"matchLabels": ctx.gateway_selector}, "maxSkew": 1}
    pod = {
        "serviceAccountName": ctx.names.service_account,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": GATEWAY_UID, "runAsGroup": GATEWAY_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        # CPU work on the system pool: never a GPU node.
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "topologySpreadConstraints": [
            {**spread, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            {**spread, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"},
        ],
        # Long enough for held and streaming requests to finish on a rollout.
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": GATEWAY_CONFIG}},
            {"name": "keys", "secret": {"secretName": GATEWAY_KEYS_SECRET}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": ctx.meta("gateway", labels=ctx.gateway_labels),
        "spec": {
            "replicas": GATEWAY_REPLICAS,
            "selector": {"matchLabels": ctx.gateway_selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": ctx.gateway_labels}, "spec": pod},
        },
    }


def gateway_service(ctx: RenderContext) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": ctx.meta(GATEWAY_SERVICE, labels=ctx.gateway_labels),
        "spec": {"type": "ClusterIP", "selector": ctx.gateway_selector,
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                           {"name": "metrics", "port": GATEWAY_METRICS_PORT, "targetPort": "metrics",
                            "protocol": "TCP"}]},
    }


def gateway_disruption_budget(ctx: RenderContext) -> dict:
    # One of the two replicas stays up through node drains.
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": ctx.meta("gateway", labels=ctx.gateway_labels),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": ctx.gateway_selector}},
    }
