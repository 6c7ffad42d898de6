"""The metering collector: its manifests, its place in the platform plan, and the one door endpoints open to it."""

from __future__ import annotations

import copy
import json
import posixpath

import kubernetes_validate
import pytest
import yaml

from privend import metering, render
from privend.billing.agent_config import render_agent_config
from privend.config import load_environment
from privend.naming import cluster_name
from privend.versions import CLOUDWATCH_AGENT_IMAGE

ENVS = ["dev", "staging", "prod"]
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
EXPECTED_NAMESPACES = {"usage": "PrivateEndpoint/Usage", "engine": "PrivateEndpoint/Engine"}


def _rendered(env: str) -> dict:
    cfg = load_environment(env)
    return render_agent_config(cfg.environment, cluster_name=cluster_name(env), region=cfg.region)


def _in_metering(plan, type_: str) -> dict:
    return {r.inputs["metadata"]["name"]: r for r in plan.by_type(type_)
            if r.inputs["metadata"].get("namespace") == metering.NAMESPACE}


def _pod(deployment) -> dict:
    return deployment.inputs["spec"]["template"]["spec"]


# ----------------------------------------------------------------------------- manifests

@pytest.mark.parametrize("env", ENVS)
def test_every_collector_object_passes_strict_openapi_validation(env):
    cfg = load_environment(env)
    objects = metering.render_collector(cfg, cluster_name(env))
    assert [o["kind"] for o in objects] == [
        "Namespace", "NetworkPolicy", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
        "ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "Deployment",
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, cfg.kubernetes_version + ".0", strict=True)


def test_strict_validation_would_catch_a_misspelt_collector_field():
    deployment = metering.deployment("usage", _rendered("dev"))
    deployment["spec"]["template"]["spec"]["hostNetwrok"] = False
    with pytest.raises(kubernetes_validate.ValidationError, match=r"\('hostNetwrok' was unexpected\)"):
        kubernetes_validate.validate(deployment, "1.34.0", strict=True)


def test_agents_that_disagree_on_the_scrape_config_path_are_refused():
    rendered = copy.deepcopy(_rendered("dev"))
    rendered["agents"]["engine"]["logs"]["metrics_collected"]["prometheus"]["prometheus_config_path"] = "/etc/other.yaml"
    with pytest.raises(ValueError, match="agents disagree on prometheus_config_path"):
        metering.prometheus_config_path(rendered)


def test_a_configuration_change_rolls_the_collector_pods():
    def config_hash(rendered, agent):
        return metering.deployment(agent, rendered)["spec"]["template"]["metadata"]["annotations"][
            metering.CONFIG_HASH_ANNOTATION]

    dev, prod = _rendered("dev"), _rendered("prod")
    assert config_hash(dev, "usage") != config_hash(prod, "usage")
    assert config_hash(dev, "usage") != config_hash(dev, "engine")
    assert config_hash(dev, "usage") == config_hash(copy.deepcopy(dev), "usage")


# ----------------------------------------------------------------------------- the platform plan

@pytest.mark.parametrize("env", ENVS)
def test_platform_runs_one_single_replica_collector_per_metrics_namespace_off_the_host_network(platform_plan, env):
    deployments = _in_metering(platform_plan(env), DEPLOYMENT)
    assert set(deployments) == {"collector-usage", "collector-engine"}
    for d in deployments.values():
        spec = d.inputs["spec"]
        assert spec["replicas"] == 1  # two would publish every token delta twice
        assert spec["strategy"] == {"type": "Recreate"}  # no overlap of old and new pod either
        pod = _pod(d)
        assert pod["hostNetwork"] is False
        assert pod["nodeSelector"] == {"privend.io/pool": "system"}
        assert pod["serviceAccountName"] == metering.SERVICE_ACCOUNT
        assert "tolerations" not in pod  # never on GPU nodes
        (container,) = pod["containers"]
        assert container["image"] == CLOUDWATCH_AGENT_IMAGE
        assert container["image"].startswith("public.ecr.aws/cloudwatch-agent/cloudwatch-agent:")
        assert "@sha256:" in container["image"]
        env_vars = {e["name"]: e["value"] for e in container["env"]}
        assert env_vars["RUN_WITH_IRSA"] == "True"
        assert env_vars["AWS_REGION"] == load_environment(env).region


def test_collector_containers_are_hardened(platform_plan):
    for d in _in_metering(platform_plan("prod"), DEPLOYMENT).values():
        pod = _pod(d)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["runAsGroup"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in sc
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert all("hostPath" not in v for v in volumes.values())
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        # Whatever the agent may write to is an emptyDir; everything else it sees is read-only config.
        for path, mount in mounts.items():
            volume = volumes[mount["name"]]
            assert "emptyDir" in volume or ("configMap" in volume and mount["readOnly"] is True), path


def test_collector_namespace_enforces_restricted_pod_security_and_admits_no_ingress(platform_plan):
    plan = platform_plan("prod")
    (ns,) = [r for r in plan.by_type("kubernetes:core/v1:Namespace")
             if r.inputs["metadata"]["name"] == metering.NAMESPACE]
    labels = ns.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    policies = _in_metering(plan, POLICY)
    assert policies["deny-ingress"].inputs["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


@pytest.mark.parametrize("env", ENVS)
def test_collector_config_maps_hold_exactly_the_rendered_agent_configuration(platform_plan, env):
    rendered = _rendered(env)
    maps = _in_metering(platform_plan(env), CONFIG_MAP)
    assert set(maps) == {"prometheus-scrape", "agent-usage", "agent-engine"}
    scrape_path = rendered["agents"]["usage"]["logs"]["metrics_collected"]["prometheus"]["prometheus_config_path"]
    (scrape_file, scrape_text), = maps["prometheus-scrape"].inputs["data"].items()
    assert scrape_file == posixpath.basename(scrape_path)
    assert yaml.safe_load(scrape_text) == rendered["prometheus"]
    for agent in ("usage", "engine"):
        (file_name, text), = maps[f"agent-{agent}"].inputs["data"].items()
        assert file_name == "cwagentconfig.json"
        assert json.loads(text) == rendered["agents"][agent]


@pytest.mark.parametrize("env", ENVS)
def test_each_collector_mounts_its_own_agent_config_where_the_agent_reads_it(platform_plan, env):
    rendered = _rendered(env)
    scrape_path = rendered["agents"]["usage"]["logs"]["metrics_collected"]["prometheus"]["prometheus_config_path"]
    maps = _in_metering(platform_plan(env), CONFIG_MAP)
    for agent, d in ((n.removeprefix("collector-"), d) for n, d in _in_metering(platform_plan(env), DEPLOYMENT).items()):
        pod = _pod(d)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]]["configMap"]
                  for m in pod["containers"][0]["volumeMounts"] if "configMap" in volumes[m["name"]]}
        assert set(mounts) == {"/etc/cwagentconfig", posixpath.dirname(scrape_path)}
        agent_map = mounts["/etc/cwagentconfig"]
        assert agent_map["items"] == [{"key": "cwagentconfig.json", "path": "cwagentconfig.json"}]
        mounted = json.loads(maps[agent_map["name"]].inputs["data"]["cwagentconfig.json"])
        emf = mounted["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
        assert emf["metric_namespace"] == EXPECTED_NAMESPACES[agent]
        scrape_map = mounts[posixpath.dirname(scrape_path)]
        assert scrape_map["name"] == "prometheus-scrape"
        assert [i["path"] for i in scrape_map["items"]] == [posixpath.basename(scrape_path)]


def test_collector_irsa_role_is_bound_to_its_service_account_and_scoped_to_the_metering_namespaces(platform_plan):
    plan = platform_plan("prod")
    rendered = _rendered("prod")
    (sa,) = _in_metering(plan, "kubernetes:core/v1:ServiceAccount").values()
    role_arn = sa.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    roles = {r.outputs["arn"]: r for r in plan.by_type("aws:iam/role:Role")}
    role = roles[role_arn]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert sorted(trust.values()) == ["sts.amazonaws.com", "system:serviceaccount:privend-metering:metering-collector"]
    assert not [a for a in plan.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"] == role.outputs["name"]]  # no managed policy on top

    (inline,) = [p for p in plan.by_type("aws:iam/rolePolicy:RolePolicy") if p.name == f"{role.name}-inline"]
    statements = json.loads(inline.inputs["policy"])["Statement"]
    metrics = [s for s in statements if "cloudwatch:PutMetricData" in json.dumps(s["Action"])]
    (put,) = metrics
    assert put["Action"] == "cloudwatch:PutMetricData"
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": ["PrivateEndpoint/Engine", "PrivateEndpoint/Usage"]}}
    (logs,) = [s for s in statements if s is not put]
    assert sorted(logs["Action"]) == ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams",
                                      "logs:PutLogEvents"]
    groups = sorted(a["logs"]["metrics_collected"]["prometheus"]["log_group_name"] for a in rendered["agents"].values())
    assert groups == ["/aws/containerinsights/privend-prod/privend/engine", "/aws/containerinsights/privend-prod/privend/usage"]
    prefix = "arn:aws:logs:us-east-1:123456789012:log-group:"
    assert sorted(logs["Resource"]) == sorted([prefix + g for g in groups] + [prefix + g + ":*" for g in groups])


def test_collector_may_only_read_what_pod_discovery_needs(platform_plan):
    plan = platform_plan("prod")
    (role,) = plan.by_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    assert role.inputs["rules"] == [{"apiGroups": [""], "resources": ["pods", "endpoints", "services", "namespaces"],
                                     "verbs": ["get", "list", "watch"]}]
    (binding,) = plan.by_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
    assert binding.inputs["roleRef"]["name"] == role.inputs["metadata"]["name"]
    assert binding.inputs["subjects"] == [{"kind": "ServiceAccount", "name": "metering-collector",
                                           "namespace": "privend-metering"}]


# ----------------------------------------------------------------------------- the endpoints' side

def test_endpoint_admits_exactly_the_metering_collector_on_the_engine_port(fleet, platform_plan):
    collector_labels = [d.inputs["spec"]["template"]["metadata"]["labels"]
                        for d in _in_metering(platform_plan("dev"), DEPLOYMENT).values()]
    assert len(collector_labels) == 2
    cfg = load_environment("dev")
    for name, (spec, plan) in fleet("dev").items():
        port = render.context(spec, cfg).engine.port
        policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in plan.by_type(POLICY)}
        scraper = policies["allow-metrics-scraper"]
        assert scraper["policyTypes"] == ["Ingress"]
        (rule,) = scraper["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}], name
        (peer,) = rule["from"]
        # One peer holding both selectors: pods with these labels AND in that namespace.
        assert peer == {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "privend-metering"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "cloudwatch-agent",
                                            "app.kubernetes.io/component": "metering-collector"}},
        }
        for labels in collector_labels:  # both collectors' pods are matched
            assert peer["podSelector"]["matchLabels"].items() <= labels.items()


def test_no_endpoint_policy_admits_any_other_namespace(fleet):
    # Other namespaces: the metering collector, and KEDA's operator (to the gateway's metrics port only).
    # In the endpoint's own namespace: only its gateway, to the engine.
    allowed = {metering.NAMESPACE: "allow-metrics-scraper", render.KEDA_NAMESPACE: "allow-autoscaler-to-gateway-metrics"}
    for name, (_, plan) in fleet("dev").items():
        for policy in plan.by_type(POLICY):
            policy_name = policy.inputs["metadata"]["name"]
            for rule in policy.inputs["spec"].get("ingress", []):
                for peer in rule["from"]:
                    if "namespaceSelector" in peer:
                        (namespace,) = peer["namespaceSelector"]["matchLabels"].values()
                        assert allowed.get(namespace) == policy_name, (name, policy.name)
                        assert peer["podSelector"]["matchLabels"], (name, policy.name)  # never a whole namespace
                    elif "podSelector" in peer:
                        assert policy_name == "allow-gateway-to-engine", (name, policy.name)
                        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == f"{name}-gateway"
    assert render.METERING_NAMESPACE == metering.NAMESPACE == "privend-metering"
