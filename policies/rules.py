"""Guardrails as plain functions: what every Private Endpoint stack must satisfy.

Each rule sees resources the way the Pulumi engine hands them to a policy pack
(type, name, URN and the camelCase input properties) and returns messages.
The same rules run in three places: the CrossGuard pack (`__main__.py`) under
`pulumi preview`/`up`, and offline in `privend plan` / `privend policy check`,
which also know which inputs are Pulumi secrets (the engine unwraps secrets
before a policy sees them, so the secret-ness checks run offline only).

No Pulumi import here: the module is imported by the pack and by the CLI alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

MANDATORY = "mandatory"
ADVISORY = "advisory"
ENDPOINT_COMPONENT = "private-endpoint:endpoint:Endpoint"
WORLD = {"0.0.0.0/0", "::/0"}
SERVING_PORTS = (80, 8080)
HF_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")
SECRET_ENV_NAMES = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD)$")
ECR_PATTERN = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/privend/")


@dataclass(frozen=True)
class Resource:
    """A resource as a rule sees it."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    stack: str = ""
    id: str | None = None
    # Dotted paths of inputs that are Pulumi secrets; None where that is unknown (under the engine).
    secret_paths: frozenset[str] | None = None

    @property
    def in_endpoint_stack(self) -> bool:
        """Children of the Endpoint component: everything an endpoint stack declares."""
        qualified = self.urn.split("::")[2] if self.urn.count("::") >= 3 else ""
        return ENDPOINT_COMPONENT + "$" in qualified or self.type == ENDPOINT_COMPONENT

    @property
    def tags(self) -> Mapping[str, str]:
        return self.props.get("tags") or {}

    @property
    def labels(self) -> Mapping[str, str]:
        return (self.props.get("metadata") or {}).get("labels") or {}


@dataclass(frozen=True)
class Context:
    """Facts the rules check against, from the catalogs and the pack's config."""

    gpu_instance_types: frozenset[str]
    allowed_registries: tuple[str, ...]
    cost_tags: tuple[str, ...] = ()
    required_tags: tuple[str, ...] = ("environment", "managed-by")


Check = Callable[[Resource, Context], Iterable[str]]
StackCheck = Callable[[Sequence[Resource], Context], Iterable[tuple[Resource | None, str]]]
PlanCheck = Callable[[Mapping[str, Sequence[Resource]], Context], Iterable[tuple[Resource | None, str]]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str  # how to fix a violation; printed with every violation
    enforcement: str = MANDATORY
    check: Check | None = None
    stack_check: StackCheck | None = None
    plan_check: PlanCheck | None = None  # across the stacks of a whole plan: offline only



RULES: list[Rule] = []


def rule(name: str, description: str, enforcement: str = MANDATORY, *, stack: bool = False, plan: bool = False):
    def register(fn):
        RULES.append(Rule(name, description, enforcement,
                          check=fn if not (stack or plan) else None,
                          stack_check=fn if stack else None,
                          plan_check=fn if plan else None))
        return fn
    return register


def _has_tags_input(r: Resource) -> bool:
    return r.type.startswith("aws:") and "tags" in r.props


# ----------------------------------------------------------------------------- tagging

@rule("required-tags",
      "Tag every AWS resource with environment, managed-by and the cost tags (the platform's tags() helper does "
      "this; pass tags=... to the new resource), and endpoint-stack resources with privend.io/tenant and "
      "privend.io/endpoint.")
def required_tags(r: Resource, ctx: Context) -> Iterator[str]:
    if not _has_tags_input(r):
        return
    missing = [k for k in (*ctx.required_tags, *ctx.cost_tags) if not r.tags.get(k)]
    if r.in_endpoint_stack:
        missing += [k for k in ("privend.io/tenant", "privend.io/endpoint") if not r.tags.get(k)]
    if missing:
        yield f"{r.type} {r.name} lacks tag(s) {', '.join(missing)}"


@rule("endpoint-object-labels",
      "Label every Kubernetes object of an endpoint with privend.io/tenant and privend.io/endpoint "
      "(privend.render adds them; do not build objects by hand).")
def endpoint_labels(r: Resource, ctx: Context) -> Iterator[str]:
    if not (r.type.startswith("kubernetes:") and r.in_endpoint_stack and "metadata" in r.props):
        return
    missing = [k for k in ("privend.io/tenant", "privend.io/endpoint") if not r.labels.get(k)]
    if missing:
        yield f"{r.type} {r.name} lacks label(s) {', '.join(missing)}"


# ----------------------------------------------------------------------------- GPU nodes

@rule("launch-template-hardening",
      "Launch templates must require IMDSv2 (metadataOptions.httpTokens: required) and encrypt every EBS "
      "volume (ebs.encrypted: \"true\"); use privend.components.node_group.launch_template.")
def launch_template(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type != "aws:ec2/launchTemplate:LaunchTemplate":
        return
    if (r.props.get("metadataOptions") or {}).get("httpTokens") != "required":
        yield f"launch template {r.name} does not require IMDSv2"
    for mapping in r.props.get("blockDeviceMappings") or []:
        if str((mapping.get("ebs") or {}).get("encrypted")).lower() != "true":
            yield f"launch template {r.name} has an unencrypted volume {mapping.get('deviceName')}"


@rule("gpu-node-groups",
      "GPU node groups: instance types from privend/catalog/gpu_instances.yaml only, a hardened launch template, "
      "the NVIDIA AMI and the nvidia.com/gpu taint.")
def gpu_node_groups(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type != "aws:eks/nodeGroup:NodeGroup":
        return
    taints = r.props.get("taints") or []
    gpu = any(t.get("key") == "nvidia.com/gpu" for t in taints) or "NVIDIA" in str(r.props.get("amiType", ""))
    if not gpu:
        return
    unknown = [t for t in r.props.get("instanceTypes") or [] if t not in ctx.gpu_instance_types]
    if unknown:
        yield f"GPU node group {r.name} uses instance types outside the GPU catalog: {', '.join(unknown)}"
    if not r.props.get("launchTemplate"):
        yield f"GPU node group {r.name} has no launch template (IMDSv2 and encrypted volumes are set there)"
    if not any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE" for t in taints):
        yield f"GPU node group {r.name} lacks the nvidia.com/gpu NoSchedule taint"


@rule("gpu-node-groups-private-subnets",
      "Put node groups only in the private node subnets (privend.io/subnet-role: nodes); never in the NAT or "
      "load balancer subnets.", stack=True)
def node_groups_private(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[Resource | None, str]]:
    subnets = {r.id or r.props.get("id"): r for r in resources if r.type == "aws:ec2/subnet:Subnet"}
    roles = {sid: s.tags.get("privend.io/subnet-role") for sid, s in subnets.items()}
    for r in resources:
        if r.type != "aws:eks/nodeGroup:NodeGroup":
            continue
        for subnet_id in r.props.get("subnetIds") or []:
            role = roles.get(subnet_id)
            if role is not None and role != "nodes":
                yield r, f"node group {r.name} is placed in a {role} subnet ({subnet_id})"
            subnet = subnets.get(subnet_id)
            if subnet is not None and subnet.props.get("mapPublicIpOnLaunch"):
                yield r, f"node group {r.name} is placed in a subnet that assigns public IPs ({subnet_id})"


# ----------------------------------------------------------------------------- network exposure

@rule("internal-load-balancers",
      "Endpoint load balancers must be internal (internal: true): customers reach them through PrivateLink only.")
def internal_load_balancers(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type == "aws:lb/loadBalancer:LoadBalancer" and r.props.get("internal") is not True:
        yield f"load balancer {r.name} is internet-facing"


@rule("tls-serving-listener",
      "Endpoint load balancer listeners must be TLS (or HTTPS) with a certificate and a TLS 1.3 security policy "
      "(ELBSecurityPolicy-TLS13-*): never plain TCP or HTTP. privend's Endpoint component does this.")
def tls_serving_listener(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type != "aws:lb/listener:Listener":
        return
    protocol = str(r.props.get("protocol") or "")
    if protocol not in ("TLS", "HTTPS"):
        yield f"listener {r.name} serves {protocol or 'an unset protocol'}, not TLS"
        return
    if not r.props.get("certificateArn"):
        yield f"listener {r.name} has no certificate"
    if not str(r.props.get("sslPolicy") or "").startswith("ELBSecurityPolicy-TLS13-"):
        yield f"listener {r.name} has no TLS 1.3 security policy"


def _opens_serving_port(rule_: Mapping[str, Any]) -> bool:
    low, high = int(rule_.get("fromPort", 0) or 0), int(rule_.get("toPort", 65535) or 65535)
    if str(rule_.get("protocol", rule_.get("ipProtocol", "tcp"))) == "-1":
        low, high = 0, 65535
    return any(low <= port <= high for port in SERVING_PORTS)


@rule("no-world-open-serving-port",
      "Never open the serving ports (80, 8080) to 0.0.0.0/0 or ::/0; admit the VPC CIDR or a security group.")
def world_open(r: Resource, ctx: Context) -> Iterator[str]:
    rules: list[Mapping[str, Any]] = []
    if r.type == "aws:ec2/securityGroup:SecurityGroup":
        rules = list(r.props.get("ingress") or [])
    elif r.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and r.props.get("type") == "ingress":
        rules = [r.props]
    elif r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        rules = [{**r.props, "cidrBlocks": [r.props.get("cidrIpv4")], "ipv6CidrBlocks": [r.props.get("cidrIpv6")]}]
    for item in rules:
        cidrs = set(item.get("cidrBlocks") or []) | set(item.get("ipv6CidrBlocks") or [])
        if cidrs & WORLD and _opens_serving_port(item):
            yield f"security group {r.name} opens a serving port to {', '.join(sorted(cidrs & WORLD))}"


@rule("endpoint-service-principals",
      "A VPC endpoint service must list allowedPrincipals, never '*', each an IAM principal of the endpoint's "
      "tenant account (privend.io/tenant-account tag); fix the tenant's --principal list.")
def endpoint_service(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type != "aws:ec2/vpcEndpointService:VpcEndpointService":
        return
    principals = list(r.props.get("allowedPrincipals") or [])
    if not principals:
        yield f"endpoint service {r.name} allows no principals (or everyone)"
        return
    account = r.tags.get("privend.io/tenant-account")
    for arn in principals:
        if "*" in arn:
            yield f"endpoint service {r.name} allows the wildcard principal {arn!r}"
        elif account is None:
            yield f"endpoint service {r.name} has no privend.io/tenant-account tag to check {arn} against"
        elif arn.split(":")[4:5] != [account]:
            yield f"endpoint service {r.name} allows {arn}, which is not in the tenant's account {account}"


# ----------------------------------------------------------------------------- engine containers

def _pod_spec(r: Resource) -> Mapping[str, Any] | None:
    if r.type != "kubernetes:apps/v1:Deployment":
        return None
    return ((r.props.get("spec") or {}).get("template") or {}).get("spec")


def _image_allowed(image: str, ctx: Context) -> bool:
    return image.startswith(tuple(ctx.allowed_registries)) or bool(ECR_PATTERN.match(image))


@rule("engine-containers",
      "Engine containers: image pinned by @sha256 digest from an allowed registry, USAGE_STATS=off for TGI, "
      "non-root, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault, GPU requests equal "
      "to limits, memory limits, and startup, readiness and liveness probes (privend.render does all of this).")
def engine_containers(r: Resource, ctx: Context) -> Iterator[str]:
    pod = _pod_spec(r)
    if pod is None or not r.in_endpoint_stack:
        return
    pod_sc = pod.get("securityContext") or {}
    for c in pod.get("containers") or []:
        name = f"{r.name}/{c.get('name')}"
        image = str(c.get("image", ""))
        if "@sha256:" not in image:
            yield f"container {name} image {image!r} is not pinned by digest"
        if not _image_allowed(image, ctx):
            yield f"container {name} image {image!r} is not from an allowed registry"
        env = {e.get("name"): e for e in c.get("env") or []}
        if "MODEL_ID" in env and (env.get("USAGE_STATS") or {}).get("value") != "off":
            yield f"container {name} runs TGI without USAGE_STATS=off"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            yield f"container {name} may run as root (runAsNonRoot not set)"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"container {name} allows privilege escalation"
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            yield f"container {name} does not drop all capabilities"
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            yield f"container {name} has no RuntimeDefault seccomp profile"
        resources = c.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if str(requests.get("nvidia.com/gpu")) != str(limits.get("nvidia.com/gpu")):
            yield f"container {name} GPU requests differ from limits"
        if not limits.get("memory"):
            yield f"container {name} has no memory limit"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if not c.get(probe):
                yield f"container {name} has no {probe}"


@rule("no-plaintext-credentials",
      "Credentials (Hugging Face tokens, API keys) must be Pulumi secrets: set them with `pulumi config set "
      "--secret`, wrap them in pulumi.Output.secret, and reference them from containers with secretKeyRef.")
def plaintext_credentials(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type == "kubernetes:core/v1:Secret" and r.secret_paths is not None:
        for key in ("data", "stringData"):
            if r.props.get(key) and key not in r.secret_paths:
                yield f"secret {r.name} carries {key} that is not a Pulumi secret"
    pod = _pod_spec(r)
    for c in (pod or {}).get("containers") or []:
        for e in c.get("env") or []:
            if SECRET_ENV_NAMES.search(str(e.get("name", ""))) and "value" in e:
                yield f"container {r.name}/{c.get('name')} sets {e['name']} as a plain value, not a secretKeyRef"
    for path, value in _strings(r.props):
        if r.secret_paths is not None and any(path == p or path.startswith(p + ".") or path.startswith(p + "[")
                                              for p in r.secret_paths):
            continue
        if HF_TOKEN_PATTERN.search(value):
            yield f"{r.type} {r.name} input {path} holds a Hugging Face token in plain text"


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


# ----------------------------------------------------------------------------- data at rest

@rule("data-encryption",
      "DynamoDB tables need point-in-time recovery and server-side encryption, SNS topics a KMS key, ECR "
      "repositories scan-on-push and immutable tags, EKS clusters secrets encryption.")
def data_encryption(r: Resource, ctx: Context) -> Iterator[str]:
    p = r.props
    if r.type == "aws:dynamodb/table:Table":
        if not (p.get("pointInTimeRecovery") or {}).get("enabled"):
            yield f"table {r.name} has no point-in-time recovery"
        if not (p.get("serverSideEncryption") or {}).get("enabled"):
            yield f"table {r.name} is not encrypted with a KMS key"
    elif r.type == "aws:sns/topic:Topic" and not p.get("kmsMasterKeyId"):
        yield f"topic {r.name} is not encrypted"
    elif r.type == "aws:ecr/repository:Repository":
        if not (p.get("imageScanningConfiguration") or {}).get("scanOnPush"):
            yield f"repository {r.name} does not scan on push"
        if p.get("imageTagMutability") != "IMMUTABLE":
            yield f"repository {r.name} allows tags to be overwritten"
    elif r.type == "aws:eks/cluster:Cluster":
        if "secrets" not in ((p.get("encryptionConfig") or {}).get("resources") or []):
            yield f"cluster {r.name} does not encrypt Kubernetes secrets"


# ----------------------------------------------------------------------------- tenant namespaces

@rule("tenant-namespace",
      "Every tenant namespace enforces Pod Security Standard 'restricted' and has, in the same stack, a "
      "default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules) and a ResourceQuota.",
      stack=True)
def tenant_namespace(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[Resource | None, str]]:
    namespaces = [r for r in resources if r.type == "kubernetes:core/v1:Namespace" and r.labels.get("privend.io/tenant")]
    for ns in namespaces:
        name = (ns.props.get("metadata") or {}).get("name")
        if ns.labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            yield ns, f"namespace {name} does not enforce Pod Security Standard restricted"
        in_ns = [r for r in resources if (r.props.get("metadata") or {}).get("namespace") == name]
        deny = [r for r in in_ns if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
                and (r.props.get("spec") or {}).get("podSelector") == {}
                and set((r.props.get("spec") or {}).get("policyTypes") or []) == {"Ingress", "Egress"}
                and not (r.props.get("spec") or {}).get("ingress") and not (r.props.get("spec") or {}).get("egress")]
        if not deny:
            yield ns, f"namespace {name} has no default-deny NetworkPolicy"
        if not [r for r in in_ns if r.type == "kubernetes:core/v1:ResourceQuota"]:
            yield ns, f"namespace {name} has no ResourceQuota"


@rule("single-tenant-stack",
      "An endpoint stack holds exactly one tenant's resources: every privend.io/tenant tag and label in it "
      "must name the same tenant.", stack=True)
def single_tenant(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[Resource | None, str]]:
    owners: dict[str, Resource] = {}
    for r in resources:
        if not r.in_endpoint_stack:
            continue
        named = (r.tags.get("privend.io/tenant"), r.labels.get("privend.io/tenant"))
        for tenant in {t for t in named if t is not None}:
            owners.setdefault(tenant, r)
    if len(owners) > 1:
        for _tenant, r in sorted(owners.items())[1:]:
            yield r, f"stack holds resources of several tenants: {', '.join(sorted(owners))}"


# ----------------------------------------------------------------------------- warm headroom

# The facts privend.headroom and privend.nodes render with (tests/test_headroom.py ties them together);
# spelled out here so the pack imports no more of privend than the catalogs.
HEADROOM_PRIORITY_CLASS = "privend-warm-headroom"
AUTOSCALER_EXPENDABLE_CUTOFF = -10  # the Cluster Autoscaler never adds a node for a pod below this priority
TENANT_KEY = "privend.io/tenant"  # dedicated-tier nodes carry it as a label and as a taint
POD_TEMPLATE_KINDS = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet",
                      "kubernetes:apps/v1:ReplicaSet", "kubernetes:batch/v1:Job"}


def _workload_pod_spec(r: Resource) -> Mapping[str, Any] | None:
    """The pod spec of a Pod or of any workload that holds a pod template."""
    spec = r.props.get("spec") or {}
    if r.type == "kubernetes:core/v1:Pod":
        return spec
    if r.type == "kubernetes:batch/v1:CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    elif r.type not in POD_TEMPLATE_KINDS:
        return None
    return (spec.get("template") or {}).get("spec")


def _excludes_dedicated_nodes(pod: Mapping[str, Any]) -> bool:
    # Node selector terms are ORed: every one of them must rule out the tenant label.
    required = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    return bool(terms) and all(
        any(e.get("key") == TENANT_KEY and e.get("operator") == "DoesNotExist" for e in term.get("matchExpressions") or [])
        for term in terms)


@rule("warm-headroom-placeholders",
      "Placeholder pods (priorityClassName privend-warm-headroom) tolerate only the nvidia.com/gpu taint, never "
      "privend.io/tenant nor every taint, and require the node affinity privend.io/tenant DoesNotExist in every "
      "node selector term, so the shared buffer never lands on a dedicated tenant's nodes nor makes the autoscaler "
      "grow their node group. The privend-warm-headroom class is negative but not below the autoscaler's cutoff "
      "(-10), never the global default, preemptionPolicy Never; no other PriorityClass is negative. "
      "privend.headroom renders all of this.")
def warm_headroom(r: Resource, ctx: Context) -> Iterator[str]:
    if r.type == "kubernetes:scheduling.k8s.io/v1:PriorityClass":
        yield from _priority_class(r)
        return
    pod = _workload_pod_spec(r)
    if pod is None or pod.get("priorityClassName") != HEADROOM_PRIORITY_CLASS:
        return
    for toleration in pod.get("tolerations") or []:
        if toleration.get("key") == TENANT_KEY:
            yield f"placeholder {r.name} tolerates the tenant taint {TENANT_KEY}={toleration.get('value', '*')}"
        elif not toleration.get("key") and toleration.get("operator") == "Exists":
            yield f"placeholder {r.name} tolerates every taint, the tenant taint among them"
    if TENANT_KEY in (pod.get("nodeSelector") or {}):
        yield f"placeholder {r.name} selects a tenant's nodes ({TENANT_KEY}: {pod['nodeSelector'][TENANT_KEY]})"
    if not _excludes_dedicated_nodes(pod):
        yield f"placeholder {r.name} does not exclude dedicated-tier nodes (required node affinity {TENANT_KEY} DoesNotExist)"


def _priority_class(r: Resource) -> Iterator[str]:
    name = (r.props.get("metadata") or {}).get("name")
    value = r.props.get("value")
    if not isinstance(value, (int, float)):
        return
    if name != HEADROOM_PRIORITY_CLASS:
        if value < 0:
            yield (f"priority class {name} has the negative value {value:g}: negative priority is kept for the "
                   f"warm headroom placeholders ({HEADROOM_PRIORITY_CLASS})")
        return
    if not AUTOSCALER_EXPENDABLE_CUTOFF <= value < 0:
        yield (f"priority class {name} has the value {value:g}; placeholders need a negative value not below "
               f"{AUTOSCALER_EXPENDABLE_CUTOFF}, or endpoints cannot preempt them or the autoscaler never refills them")
    if r.props.get("globalDefault"):
        yield f"priority class {name} is the global default: every pod without a class would be a placeholder"
    if r.props.get("preemptionPolicy") != "Never":
        yield f"priority class {name} lets placeholders preempt other pods (preemptionPolicy is not Never)"


ISOLATION_IDENTITY: dict[str, Callable[[Resource], Any]] = {
    "kubernetes:core/v1:Namespace": lambda r: (r.props.get("metadata") or {}).get("name"),
    "aws:lb/loadBalancer:LoadBalancer": lambda r: r.props.get("name"),
    "aws:lb/targetGroup:TargetGroup": lambda r: r.props.get("name"),
    "aws:ec2/vpcEndpointService:VpcEndpointService": lambda r: tuple(r.props.get("networkLoadBalancerArns") or ()),
    "aws:eks/nodeGroup:NodeGroup": lambda r: r.props.get("nodeGroupName"),
}


@rule("no-shared-isolation-resources",
      "Namespaces, load balancers, target groups, endpoint services and dedicated node groups belong to one "
      "endpoint stack each; give the colliding endpoint another name.", plan=True)
def no_shared(stacks: Mapping[str, Sequence[Resource]], ctx: Context) -> Iterator[tuple[Resource | None, str]]:
    owner: dict[tuple[str, Any], str] = {}
    for stack, resources in sorted(stacks.items()):
        for r in resources:
            identify = ISOLATION_IDENTITY.get(r.type)
            if identify is None or not r.in_endpoint_stack:
                continue
            key = (r.type, identify(r))
            if key[1] in (None, (), ""):
                continue
            if key in owner and owner[key] != stack:
                yield r, f"{r.type} {key[1]} is shared by stacks {owner[key]} and {stack}"
            owner.setdefault(key, stack)


def rules_by_name() -> dict[str, Rule]:
    return {r.name: r for r in RULES}
