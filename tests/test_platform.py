"""The platform program under Pulumi mocks: assertions on the inputs the engine would receive."""

from __future__ import annotations

import inspect
import ipaddress
import json
import re

import pulumi_aws
import pytest

from privend.catalog import gpu_catalog
from privend.config import load_environment
from privend.nodes import CA_TEMPLATE, node_group_types

ENVS = ["dev", "staging", "prod"]


def _one(plan, type_, name=None):
    found = [r for r in plan.by_type(type_) if name is None or r.name == name]
    assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
    return found[0]


def _ids(plan, type_, predicate):
    return {r.id for r in plan.by_type(type_) if predicate(r)}


@pytest.mark.parametrize("env", ENVS)
def test_node_groups_use_only_private_node_subnets(platform_plan, env):
    plan = platform_plan(env)
    node_subnets = _ids(plan, "aws:ec2/subnet:Subnet", lambda r: r.inputs["tags"]["privend.io/subnet-role"] == "nodes")
    assert len(node_subnets) == load_environment(env).az_count
    public_rt_subnets = set()
    igw_tables = {r.id for r in plan.by_type("aws:ec2/routeTable:RouteTable")
                  if any("gatewayId" in route for route in r.inputs["routes"])}
    for assoc in plan.by_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        if assoc.inputs["routeTableId"] in igw_tables:
            public_rt_subnets.add(assoc.inputs["subnetId"])
    for subnet in plan.by_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
    node_groups = plan.by_type("aws:eks/nodeGroup:NodeGroup")
    # The system pool, and per GPU pool one node group per GPU count of its instance types.
    assert len(node_groups) == 1 + sum(len(node_group_types(p.instance_types)) for p in load_environment(env).gpu_pools)
    for ng in node_groups:
        assert set(ng.inputs["subnetIds"]) == node_subnets
        assert not set(ng.inputs["subnetIds"]) & public_rt_subnets


@pytest.mark.parametrize("env", ENVS)
def test_subnet_cidrs_are_inside_the_vpc_and_disjoint(platform_plan, env):
    plan = platform_plan(env)
    vpc = ipaddress.ip_network(_one(plan, "aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in plan.by_type("aws:ec2/subnet:Subnet")]
    assert all(n.subnet_of(vpc) for n in nets)
    assert len({str(n) for n in nets}) == len(nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


def test_load_balancer_subnets_are_tagged_for_internal_nlbs_only(platform_plan):
    plan = platform_plan("prod")
    lb = [s for s in plan.by_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["privend.io/subnet-role"] == "load-balancers"]
    assert len(lb) == 3
    assert all(s.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1" for s in lb)
    assert not any("kubernetes.io/role/elb" in s.inputs["tags"] for s in plan.by_type("aws:ec2/subnet:Subnet"))


@pytest.mark.parametrize("env,expected", [("dev", 1), ("staging", 1), ("prod", 3)])
def test_nat_gateways_one_per_az_in_prod_only(platform_plan, env, expected):
    assert len(platform_plan(env).by_type("aws:ec2/natGateway:NatGateway")) == expected


def test_vpc_endpoints_cover_s3_ecr_sts_and_logs(platform_plan):
    services = {r.inputs["serviceName"]: r.inputs["vpcEndpointType"]
                for r in platform_plan("prod").by_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert services == {
        "com.amazonaws.us-east-1.s3": "Gateway",
        "com.amazonaws.us-east-1.ecr.api": "Interface",
        "com.amazonaws.us-east-1.ecr.dkr": "Interface",
        "com.amazonaws.us-east-1.sts": "Interface",
        "com.amazonaws.us-east-1.logs": "Interface",
    }


@pytest.mark.parametrize("env", ENVS)
def test_gpu_node_groups_carry_taint_labels_and_nvidia_ami(platform_plan, env):
    plan = platform_plan(env)
    cfg = load_environment(env)
    for pool in cfg.gpu_pools:
        groups = node_group_types(pool.instance_types)
        assert [t for _, types in groups for t in types] == sorted(pool.instance_types, key=pool.instance_types.index)
        for i, (gpus, types) in enumerate(groups):
            name = f"gpu-{pool.name}-ng" if i == 0 else f"gpu-{pool.name}-{gpus}gpu-ng"
            ng = _one(plan, "aws:eks/nodeGroup:NodeGroup", name)
            assert ng.inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
            assert ng.inputs["labels"]["privend.io/pool"] == pool.name
            assert ng.inputs["labels"]["privend.io/gpu-model"] == pool.gpu_model
            assert ng.inputs["amiType"] == "AL2023_x86_64_NVIDIA"
            # One GPU count per node group: the autoscaler's template node is every node of the group.
            assert ng.inputs["instanceTypes"] == types
            assert {gpu_catalog().get(t).gpus for t in types} == {gpus}
            assert ng.inputs["capacityType"] == ("SPOT" if pool.capacity_type == "spot" else "ON_DEMAND")
            # The pool's floor lives in its first group; the others start from zero; each may reach maxSize.
            floor, desired = (pool.min_size, pool.desired) if i == 0 else (0, 0)
            assert ng.inputs["scalingConfig"] == {"minSize": floor, "maxSize": pool.max_size, "desiredSize": desired}


@pytest.mark.parametrize("env", ENVS)
def test_every_launch_template_requires_imdsv2_and_encrypts_gp3_root_volumes(platform_plan, env):
    plan = platform_plan(env)
    templates = {r.id: r for r in plan.by_type("aws:ec2/launchTemplate:LaunchTemplate")}
    for ng in plan.by_type("aws:eks/nodeGroup:NodeGroup"):
        lt = templates[ng.inputs["launchTemplate"]["id"]]
        assert lt.inputs["metadataOptions"]["httpTokens"] == "required"
        assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
        (disk,) = lt.inputs["blockDeviceMappings"]
        assert disk["ebs"]["encrypted"] == "true"
        assert disk["ebs"]["volumeType"] == "gp3"


def test_system_pool_is_not_tainted_and_runs_standard_ami(platform_plan):
    ng = _one(platform_plan("prod"), "aws:eks/nodeGroup:NodeGroup", "system-ng")
    assert ng.inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert "taints" not in ng.inputs
    assert ng.inputs["labels"] == {"privend.io/pool": "system"}


def test_gpu_pools_can_scale_from_zero_through_autoscaler_template_tags(platform_plan):
    plan = platform_plan("prod")
    tags = {r.inputs["tag"]["key"]: r.inputs["tag"]["value"] for r in plan.by_type("aws:autoscaling/tag:Tag")
            if r.parent and r.parent.endswith("::gpu-h100")}
    assert tags == {
        f"{CA_TEMPLATE}/label/privend.io/pool": "h100",
        f"{CA_TEMPLATE}/label/privend.io/gpu-model": "H100",
        f"{CA_TEMPLATE}/taint/nvidia.com/gpu": "present:NoSchedule",
        f"{CA_TEMPLATE}/resources/nvidia.com/gpu": "8",
    }
    # l40s mixes 1-, 4- and 8-GPU types: each node group's Auto Scaling group advertises its own count.
    gpus_tag = f"{CA_TEMPLATE}/resources/nvidia.com/gpu"
    l40s = sorted(r.inputs["tag"]["value"] for r in plan.by_type("aws:autoscaling/tag:Tag")
                  if r.parent and r.parent.endswith("::gpu-l40s") and r.inputs["tag"]["key"] == gpus_tag)
    assert l40s == ["1", "4", "8"]
    by_group = {r.name.rsplit("-ca-", 1)[0]: r.inputs["autoscalingGroupName"] for r in plan.by_type("aws:autoscaling/tag:Tag")
                if r.parent and r.parent.endswith("::gpu-l40s") and r.inputs["tag"]["key"] == gpus_tag}
    assert set(by_group) == {"gpu-l40s", "gpu-l40s-4gpu", "gpu-l40s-8gpu"}
    assert len(set(by_group.values())) == 3  # each its own Auto Scaling group


def test_cluster_encrypts_secrets_logs_control_plane_and_keeps_prod_api_private(platform_plan):
    plan = platform_plan("prod")
    cluster = _one(plan, "aws:eks/cluster:Cluster")
    key = _one(plan, "aws:kms/key:Key", "cluster-secrets")
    assert key.inputs["enableKeyRotation"] is True
    assert cluster.inputs["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster.inputs["encryptionConfig"]["provider"]["keyArn"] == key.outputs["arn"]
    assert cluster.inputs["enabledClusterLogTypes"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert cluster.inputs["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is False
    assert cluster.inputs["version"] == "1.34"


def test_dev_api_is_public_only_to_its_configured_cidrs(platform_plan):
    vpc_config = _one(platform_plan("dev"), "aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_managed_addons_are_pinned_and_vpc_cni_enforces_network_policy(platform_plan):
    addons = {r.inputs["addonName"]: r for r in platform_plan("prod").by_type("aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "aws-ebs-csi-driver", "amazon-cloudwatch-observability"}
    assert json.loads(addons["vpc-cni"].inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert all(a.inputs["addonVersion"].startswith("v") for a in addons.values())
    roles = {r.outputs["arn"]: r for r in platform_plan("prod").by_type("aws:iam/role:Role")}
    ebs_role = roles[addons["aws-ebs-csi-driver"].inputs["serviceAccountRoleArn"]]
    conditions = json.loads(ebs_role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert sorted(conditions.values()) == ["sts.amazonaws.com", "system:serviceaccount:kube-system:ebs-csi-controller-sa"]


def test_helm_releases_are_pinned_and_device_plugin_tolerates_gpu_taint(platform_plan):
    releases = {r.inputs["chart"]: r for r in platform_plan("prod").by_type("kubernetes:helm.sh/v3:Release")}
    assert set(releases) == {"nvidia-device-plugin", "aws-load-balancer-controller", "keda", "cluster-autoscaler"}
    assert all(r.inputs["version"] for r in releases.values())
    tolerations = releases["nvidia-device-plugin"].inputs["values"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    ca = releases["cluster-autoscaler"].inputs["values"]
    assert ca["autoDiscovery"]["clusterName"] == "privend-prod"
    assert ca["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_cluster_autoscaler_may_scale_only_this_clusters_node_groups(platform_plan):
    inline = [r for r in platform_plan("prod").by_type("aws:iam/rolePolicy:RolePolicy")
              if r.name == "addons-cluster-autoscaler-inline"]
    (policy,) = inline
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert statements["ScaleOwnNodeGroups"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/privend-prod": "owned"}
    }


def test_registry_table_alert_topic_and_repositories_are_encrypted(platform_plan):
    plan = platform_plan("prod")
    table = _one(plan, "aws:dynamodb/table:Table")
    assert table.inputs["billingMode"] == "PAY_PER_REQUEST"
    assert table.inputs["pointInTimeRecovery"] == {"enabled": True}
    assert table.inputs["serverSideEncryption"]["enabled"] is True
    assert table.inputs["serverSideEncryption"]["kmsKeyArn"].startswith("arn:aws:kms:")
    assert _one(plan, "aws:sns/topic:Topic").inputs["kmsMasterKeyId"]
    repositories = plan.by_type("aws:ecr/repository:Repository")
    assert sorted(r.inputs["name"] for r in repositories) == ["privend/prod/tgi", "privend/prod/vllm"]
    for repo in repositories:
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repo.inputs["encryptionConfigurations"][0]["encryptionType"] == "KMS"


def _resource_class(type_token: str):
    """pulumi_aws class for a type token like aws:ec2/subnet:Subnet."""
    module, cls = type_token.split(":")[1].split("/")[0], type_token.split(":")[2]
    return getattr(getattr(pulumi_aws, module), cls)


# AWS resources that have no tags property at all.
UNTAGGABLE = {
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:autoscaling/tag:Tag",
    "aws:acm/certificateValidation:CertificateValidation",
    "aws:route53/record:Record",
}


def test_untaggable_list_names_only_resources_without_a_tags_input():
    for token in UNTAGGABLE:
        params = inspect.signature(_resource_class(token)._internal_init).parameters
        assert "tags" not in params, token


@pytest.mark.parametrize("env", ENVS)
def test_every_taggable_aws_resource_carries_environment_managed_by_and_cost_tags(platform_plan, env):
    cfg = load_environment(env)
    expected = cfg.tags()
    checked = 0
    for r in platform_plan(env).resources:
        if not r.type.startswith("aws:") or r.type in UNTAGGABLE or r.type.startswith("pulumi:providers"):
            continue
        assert "tags" in inspect.signature(_resource_class(r.type)._internal_init).parameters, r.type
        tags = r.inputs.get("tags") or {}
        missing = {k: v for k, v in expected.items() if tags.get(k) != v}
        assert not missing, f"{r.type} {r.name} lacks tags {missing}"
        checked += 1
    assert checked > 30


EXPECTED_OUTPUTS = {
    "clusterName", "clusterEndpoint", "oidcProviderArn", "kubeconfig", "vpcId", "privateSubnetIds",
    "privateSubnetCidrs", "gpuPools", "registryTableName", "alertTopicArn",
}


def test_stack_outputs_needed_by_endpoint_stacks_are_present_and_kubeconfig_is_secret(platform_plan):
    plan = platform_plan("prod")
    assert EXPECTED_OUTPUTS <= set(plan.outputs)
    assert plan.secret_outputs == {"kubeconfig"}
    assert plan.outputs["gpuPools"]["h100"]["gpuModel"] == "H100"
    assert plan.outputs["privateSubnetCidrs"] == ["10.30.0.0/19", "10.30.32.0/19", "10.30.64.0/19"]
    assert plan.outputs["registryTableName"] == "privend-prod-registry"
    assert plan.outputs["alertTopicArn"].startswith("arn:aws:sns:us-east-1:")


def test_keda_operator_reads_cloudwatch_through_its_own_irsa_role(platform_plan):
    plan = platform_plan("prod")
    keda = next(r for r in plan.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "keda")
    role_arn = keda.inputs["values"]["podIdentity"]["aws"]["irsa"]["roleArn"]
    roles = {r.outputs["arn"]: r for r in plan.by_type("aws:iam/role:Role")}
    trust = json.loads(roles[role_arn].inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert "system:serviceaccount:keda:keda-operator" in trust.values()
    policy = next(r for r in plan.by_type("aws:iam/rolePolicy:RolePolicy") if r.name == "addons-keda-inline")
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Action"] == ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"]


def test_observability_addon_keeps_only_the_container_insights_agent(platform_plan):
    # Metering moved to the MeteringCollector (tests/test_metering.py): the add-on's agents are
    # host-networked, and the endpoints' policies cannot admit node addresses. The configuration
    # names the default agent explicitly so the update drops the former privend-* scrapers.
    addon = next(r for r in platform_plan("dev").by_type("aws:eks/addon:Addon")
                 if r.inputs["addonName"] == "amazon-cloudwatch-observability")
    assert json.loads(addon.inputs["configurationValues"]) == {"agents": [{"name": "cloudwatch-agent"}]}
    collectors = [r for r in platform_plan("dev").by_type("kubernetes:apps/v1:Deployment")
                  if r.inputs["metadata"]["namespace"] == "privend-metering"]
    assert sorted(r.inputs["metadata"]["name"] for r in collectors) == ["collector-engine", "collector-usage"]


def test_registry_table_has_the_key_schema_the_dynamodb_backend_uses(platform_plan):
    from privend.registry.dynamodb import table_schema

    table = next(r for r in platform_plan("prod").resources if r.type == "aws:dynamodb/table:Table")
    schema = table_schema()
    keys = {k["KeyType"]: k["AttributeName"] for k in schema["KeySchema"]}
    assert (table.inputs["hashKey"], table.inputs["rangeKey"]) == (keys["HASH"], keys["RANGE"])
    assert sorted((a["name"], a["type"]) for a in table.inputs["attributes"]) == sorted(
        (a["AttributeName"], a["AttributeType"]) for a in schema["AttributeDefinitions"])
    assert table.inputs["billingMode"] == schema["BillingMode"]


def test_the_autoscaler_prefers_the_cheapest_gpu_node_group_that_fits(platform_plan):
    plan = platform_plan("dev")
    (release,) = [r for r in plan.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "cluster-autoscaler"]
    values = release.inputs["values"]
    assert values["extraArgs"]["expander"] == "priority,least-waste"
    # dev's l4 pool: g6.xlarge at $0.8048 per GPU-hour outranks g6.12xlarge at $1.1504; a 4-GPU replica,
    # which fits only the second group, still gets it. Other groups (dedicated tenants') rank last.
    assert values["expanderPriorities"] == {
        "1": [".*"],
        "20": [r"^eks-privend\-dev\-l4\-4gpu-[0-9a-f]{8}(-.*)?$"],
        "30": [r"^eks-privend\-dev\-l4-[0-9a-f]{8}(-.*)?$"],
    }
    # The patterns tell the two groups' Auto Scaling groups apart (EKS appends a UUID to the name).
    one, four = values["expanderPriorities"]["30"][0], values["expanderPriorities"]["20"][0]
    asg_one, asg_four = "eks-privend-dev-l4-46c8e1f0-3a1b-4d52-9e8f-0123456789ab", "eks-privend-dev-l4-4gpu-9ac8e1f0-3a1b"
    assert re.match(one, asg_one) and not re.match(one, asg_four)
    assert re.match(four, asg_four) and not re.match(four, asg_one)
