"""Endpoint stacks under Pulumi mocks: assertions on the inputs the engine would receive."""

from __future__ import annotations

from privend.config import load_environment
from privend.netplan import plan_subnets


def _one(plan, type_, suffix=""):
    found = [r for r in plan.by_type(type_) if r.name.endswith(suffix)]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def test_stack_is_named_env_dash_endpoint(fleet):
    assert {plan.stack for _, plan in fleet("dev").values()} == {"dev-chat", "dev-code", "dev-private", "dev-batch"}


def test_load_balancer_is_internal_nlb_in_load_balancer_subnets(fleet, platform_plan):
    spec, plan = fleet("dev")["chat"]
    lb = _one(plan, "aws:lb/loadBalancer:LoadBalancer")
    assert lb.inputs["internal"] is True
    assert lb.inputs["loadBalancerType"] == "network"
    assert lb.inputs["subnets"] == platform_plan("dev").outputs["loadBalancerSubnetIds"]
    assert len(lb.inputs["name"]) <= 32
    tg = _one(plan, "aws:lb/targetGroup:TargetGroup")
    assert tg.inputs["targetType"] == "ip"
    assert tg.inputs["port"] == 8080
    # The targets are the gateway pods, which answer their own readiness.
    assert tg.inputs["healthCheck"]["path"] == "/gateway/ready"
    assert len(tg.inputs["name"]) <= 32


def test_load_balancer_security_group_never_opens_to_the_internet(fleet):
    for _, plan in fleet("dev").values():
        sg = _one(plan, "aws:ec2/securityGroup:SecurityGroup")
        for rule in sg.inputs["ingress"] + sg.inputs["egress"]:
            assert "0.0.0.0/0" not in rule.get("cidrBlocks", [])
            assert "::/0" not in rule.get("ipv6CidrBlocks", [])


def test_endpoint_service_allows_exactly_the_tenants_principals(fleet):
    expected = {
        "chat": ["arn:aws:iam::111122223333:root"],
        "code": ["arn:aws:iam::111122223333:root"],
        "private": ["arn:aws:iam::444455556666:role/inference", "arn:aws:iam::444455556666:root"],
        "batch": ["arn:aws:iam::777788889999:root"],
    }
    for name, (_, plan) in fleet("dev").items():
        service = _one(plan, "aws:ec2/vpcEndpointService:VpcEndpointService")
        assert sorted(service.inputs["allowedPrincipals"]) == expected[name]
        lb = _one(plan, "aws:lb/loadBalancer:LoadBalancer")
        assert service.inputs["networkLoadBalancerArns"] == [lb.outputs["arn"]]


def test_secrets_come_from_pulumi_secrets_and_never_appear_in_inputs(fleet):
    from privend.plan import OFFLINE_HF_TOKEN, plan_json

    spec, plan = fleet("dev")["chat"]
    secrets = {r.inputs["metadata"]["name"]: r for r in plan.by_type("kubernetes:core/v1:Secret")}
    # The engine has no API key of its own any more: the gateway's key routes are the Secret.
    assert set(secrets) == {"gateway-keys", "hf-token"}
    assert all(r.secret_paths == ["stringData"] and r.inputs["stringData"] == "[secret]" for r in secrets.values())
    output = plan_json([plan])
    assert OFFLINE_HF_TOKEN not in output
    assert "Bearer" not in output
    assert "apiKey" not in plan.outputs


def test_every_endpoint_aws_resource_carries_tenant_and_endpoint_tags(fleet):
    cfg = load_environment("dev")
    for name, (spec, plan) in fleet("dev").items():
        for r in plan.resources:
            if r.type.startswith("aws:") and "tags" in r.inputs:
                tags = r.inputs["tags"]
                assert tags["privend.io/tenant"] == spec.tenant, (r.type, r.name)
                assert tags["privend.io/endpoint"] == name
                assert tags["environment"] == cfg.environment
                assert tags["managed-by"] == "privend"


def test_alarms_publish_to_the_platform_alert_topic(fleet, platform_plan):
    topic = platform_plan("dev").outputs["alertTopicArn"]
    _, plan = fleet("dev")["chat"]
    alarms = {r.inputs["metricName"]: r for r in plan.by_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert set(alarms) == {"QueueSize", "RequestFailures", "HealthyHostCount"}
    assert all(a.inputs["alarmActions"] == [topic] for a in alarms.values())
    _, zero = fleet("dev")["batch"]
    # Scale-to-zero endpoints have no ready replica while idle; no alarm for that.
    assert "HealthyHostCount" not in {r.inputs["metricName"] for r in zero.by_type("aws:cloudwatch/metricAlarm:MetricAlarm")}


def test_pods_admit_only_their_load_balancer_on_the_serving_port(fleet, platform_plan):
    _, plan = fleet("dev")["chat"]
    rule = _one(plan, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    sg = _one(plan, "aws:ec2/securityGroup:SecurityGroup")
    assert rule.inputs["securityGroupId"] == platform_plan("dev").outputs["clusterSecurityGroupId"]
    assert rule.inputs["referencedSecurityGroupId"] == sg.id
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (8080, 8080, "tcp")


def test_target_group_binding_points_at_the_endpoints_target_group(fleet):
    _, plan = fleet("dev")["chat"]
    tg = _one(plan, "aws:lb/targetGroup:TargetGroup")
    binding = _one(plan, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
    assert binding.inputs["spec"]["targetGroupARN"] == tg.outputs["arn"]
    assert binding.inputs["metadata"]["namespace"] == "ep-chat"


def test_dedicated_tenant_gets_its_own_tainted_node_group_and_role(fleet):
    spec, plan = fleet("dev")["private"]
    # dev's l4 pool has 1- and 4-GPU types: the tenant's own pool gets a node group for each count.
    groups = plan.by_type("aws:eks/nodeGroup:NodeGroup")
    assert sorted(g.inputs["instanceTypes"] for g in groups) == [["g6.12xlarge"], ["g6.xlarge"]]
    assert all({"key": "privend.io/tenant", "value": "globex", "effect": "NO_SCHEDULE"} in g.inputs["taints"]
               for g in groups)
    (ng,) = [g for g in groups if g.inputs["instanceTypes"] == ["g6.xlarge"]]
    assert {"key": "privend.io/tenant", "value": "globex", "effect": "NO_SCHEDULE"} in ng.inputs["taints"]
    assert ng.inputs["labels"]["privend.io/tenant"] == "globex"
    role = _one(plan, "aws:iam/role:Role")
    assert ng.inputs["nodeRoleArn"] == role.outputs["arn"]
    for name in ("chat", "code", "batch"):
        assert not fleet("dev")[name][1].by_type("aws:eks/nodeGroup:NodeGroup")


def test_network_policies_allow_serving_only_from_load_balancer_subnets(fleet):
    cfg = load_environment("dev")
    lb_cidrs = sorted(str(s.load_balancers) for s in plan_subnets(cfg.vpc_cidr, cfg.az_count))
    _, plan = fleet("dev")["chat"]
    policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in plan.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    (rule,) = policies["allow-serving"]["ingress"]
    assert sorted(peer["ipBlock"]["cidr"] for peer in rule["from"]) == lb_cidrs
