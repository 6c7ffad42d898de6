"""Tenant isolation: what the platform promises when many customers share it."""

from __future__ import annotations

import hashlib
import itertools

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privend.config import load_environment
from privend.naming import endpoint_names
from privend.values import ENDPOINT_NAME_MAX, TENANT_NAME_MAX
from privend.render import render_endpoint
from privend.spec import build_spec, validate_request, validate_tenant

# Identity of each isolation resource within its scope.
IDENTITY = {
    "kubernetes:core/v1:Namespace": lambda r: r.inputs["metadata"]["name"],
    "kubernetes:core/v1:Secret": lambda r: (r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]),
    "aws:ec2/securityGroup:SecurityGroup": lambda r: r.inputs["name"],
    "aws:lb/loadBalancer:LoadBalancer": lambda r: r.inputs["name"],
    "aws:lb/targetGroup:TargetGroup": lambda r: r.inputs["name"],
    "aws:ec2/vpcEndpointService:VpcEndpointService": lambda r: r.id,
    "aws:iam/role:Role": lambda r: r.inputs["name"],
    "aws:eks/nodeGroup:NodeGroup": lambda r: r.inputs["nodeGroupName"],
}


def test_planned_stacks_share_no_isolation_resource(fleet, platform_plan):
    seen: dict[tuple, str] = {}
    platform = platform_plan("dev")
    for r in platform.resources:
        if r.type in IDENTITY and "name" in r.inputs or r.type == "aws:eks/nodeGroup:NodeGroup":
            seen[(r.type, IDENTITY[r.type](r))] = platform.stack
    counted = 0
    for _, plan in fleet("dev").values():
        for r in plan.resources:
            if r.type in IDENTITY:
                key = (r.type, IDENTITY[r.type](r))
                assert key not in seen, f"{key} in both {seen[key]} and {plan.stack}"
                seen[key] = plan.stack
                counted += 1
    assert counted >= 4 * 6


def test_no_network_policy_admits_another_endpoints_namespace(fleet):
    namespaces = {plan_stack_ns for plan_stack_ns in (spec_plan[1].outputs["namespace"] for spec_plan in fleet("dev").values())}
    for _, plan in fleet("dev").values():
        for policy in plan.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy"):
            for rule in policy.inputs["spec"].get("ingress", []):
                assert rule.get("from"), "an ingress rule without peers admits everyone"
                for peer in rule["from"]:
                    selector = peer.get("namespaceSelector")
                    if selector is not None:
                        assert selector.get("matchLabels", {}).get("kubernetes.io/metadata.name") not in namespaces
                        assert selector != {}, "an empty namespaceSelector admits every namespace"


def test_dedicated_pods_tolerate_only_their_own_tenant_taint(fleet):
    for spec, plan in fleet("dev").values():
        (deployment,) = [d for d in plan.by_type("kubernetes:apps/v1:Deployment")
                         if d.inputs["metadata"]["name"] != "gateway"]
        tolerations = deployment.inputs["spec"]["template"]["spec"]["tolerations"]
        tenant_tolerations = [t for t in tolerations if t["key"] == "privend.io/tenant"]
        if spec.tier == "dedicated":
            assert tenant_tolerations == [{"key": "privend.io/tenant", "operator": "Equal", "value": spec.tenant,
                                           "effect": "NoSchedule"}]
        else:
            assert tenant_tolerations == []
        assert all(t.get("operator") != "Exists" for t in tolerations)


label = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,6}){0,3}", fullmatch=True)
account = st.from_regex(r"[0-9]{12}", fullmatch=True)


@st.composite
def tenants_and_endpoints(draw):
    tenant_names = draw(st.lists(label.filter(lambda s: len(s) <= TENANT_NAME_MAX), min_size=2, max_size=8, unique=True))
    accounts = draw(st.lists(account, min_size=len(tenant_names), max_size=len(tenant_names), unique=True))
    tenants = [validate_tenant(name=n, aws_account=a, tier=draw(st.sampled_from(["shared", "dedicated"])))
               for n, a in zip(tenant_names, accounts, strict=True)]
    endpoint_names_ = draw(st.lists(label.filter(lambda s: len(s) <= ENDPOINT_NAME_MAX), min_size=len(tenants),
                                    max_size=3 * len(tenants), unique=True))
    pairs = [(name, tenants[i % len(tenants)]) for i, name in enumerate(endpoint_names_)]
    return pairs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenants_and_endpoints())
def test_generated_tenants_never_share_namespaces_names_or_principals(pairs):
    cfg = load_environment("dev")
    rendered = {}
    for name, tenant in pairs:
        spec = build_spec(validate_request(name=name, tenant=tenant.name, model="meta-llama/Llama-3.1-8B-Instruct"),
                          tenant, cfg)
        rendered[name] = (spec, render_endpoint(spec, cfg))
    names = {name: endpoint_names(cfg.environment, name) for name, _ in pairs}
    for field in ("namespace", "load_balancer", "target_group", "security_group", "node_role", "node_group", "stack"):
        values = [getattr(n, field) for n in names.values()]
        assert len(set(values)) == len(values), field
    for (spec_a, _), (spec_b, _) in itertools.combinations(rendered.values(), 2):
        if spec_a.tenant != spec_b.tenant:
            assert not set(spec_a.allowed_principals) & set(spec_b.allowed_principals)
    for name, (spec, objects) in rendered.items():
        own_ns = names[name].namespace
        assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in objects} == {own_ns}
        assert all(p.split(":")[4] == next(t for n, t in pairs if n == name).aws_account
                   for p in spec.allowed_principals)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenants_and_endpoints())
def test_generated_gateways_are_one_per_endpoint_and_reach_only_their_own_engine(pairs):
    cfg = load_environment("dev")
    gateways = {}
    for name, tenant in pairs:
        spec = build_spec(validate_request(name=name, tenant=tenant.name, model="meta-llama/Llama-3.1-8B-Instruct"),
                          tenant, cfg)
        objects = render_endpoint(spec, cfg)
        own_ns = endpoint_names(cfg.environment, name).namespace
        (gateway,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway"]
        assert gateway["metadata"]["namespace"] == own_ns
        engine_host = yaml.safe_load(next(o for o in objects if o["kind"] == "ConfigMap")["data"]["envoy.yaml"])
        (engine_cluster,) = [c for c in engine_host["static_resources"]["clusters"] if c["name"] == "engine"]
        address = engine_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        # The gateway's only upstream is its own endpoint's engine Service, in its own namespace.
        assert address["socket_address"]["address"].endswith(f".{own_ns}.svc.cluster.local")
        policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
        (rule,) = policies["allow-gateway-to-engine"]["ingress"]
        (peer,) = rule["from"]
        assert set(peer) == {"podSelector"}  # same namespace only
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == f"{name}-gateway"
        gateways[name] = gateway["spec"]["selector"]["matchLabels"]
    selectors = [tuple(sorted(s.items())) for s in gateways.values()]
    assert len(set(selectors)) == len(selectors)


def test_derived_names_fit_limits_for_the_longest_accepted_ids():
    env = "a" * 12
    names = endpoint_names(env, "e" * ENDPOINT_NAME_MAX)
    assert len(names.namespace) <= 63
    assert len(names.load_balancer) <= 32
    assert len(names.target_group) <= 32
    assert len(names.node_role) <= 64
    assert len(names.node_group) <= 63
    assert len(names.security_group) <= 255
    # Cut names stay unique: two long ids differing only at the end.
    other = endpoint_names(env, "e" * (ENDPOINT_NAME_MAX - 1) + "f")
    assert names.load_balancer != other.load_balancer
    assert names.target_group != other.target_group
    # Stable across runs (no per-process hash): the full name "pe-<env>-<endpoint>" (40 characters) is cut
    # to its first 25 and given the first 6 hex digits of its SHA-256, pinned here.
    full = f"pe-{env}-{'e' * ENDPOINT_NAME_MAX}"
    assert hashlib.sha256(full.encode()).hexdigest()[:6] == "44bf20"
    assert names.load_balancer == names.target_group == "pe-aaaaaaaaaaaa-eeeeeeeee-44bf20"
    assert endpoint_names(env, "e" * ENDPOINT_NAME_MAX) == names
