"""The front door under Pulumi mocks and as rendered manifests: TLS listener, private DNS, the gateway's
Kubernetes objects, its network policies, and key routes that exist only as a Pulumi secret."""

from __future__ import annotations

import yaml

from privend import gateway, render
from privend.config import load_environment
from privend.netplan import plan_subnets
from privend.spec import GatewayKey


def _one(plan, type_, suffix=""):
    found = [r for r in plan.by_type(type_) if r.name.endswith(suffix)]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def _by_name(plan, type_):
    return {r.inputs["metadata"]["name"]: r.inputs for r in plan.by_type(type_)}


def test_listener_is_tls_on_443_with_the_environment_certificate_and_a_tls13_policy(fleet, platform_plan):
    _, plan = fleet("dev")["chat"]
    listener = _one(plan, "aws:lb/listener:Listener")
    assert (listener.inputs["protocol"], listener.inputs["port"]) == ("TLS", 443)
    assert listener.inputs["certificateArn"] == platform_plan("dev").outputs["endpointCertificateArn"]
    assert listener.inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-3-2021-06"
    tg = _one(plan, "aws:lb/targetGroup:TargetGroup")
    assert tg.inputs["port"] == render.GATEWAY_PORT
    sg = _one(plan, "aws:ec2/securityGroup:SecurityGroup")
    assert [(r["fromPort"], r["toPort"]) for r in sg.inputs["ingress"]] == [(443, 443)]


def test_platform_makes_one_dns_validated_wildcard_certificate_per_environment(platform_plan):
    for env in ("dev", "prod"):
        cfg = load_environment(env)
        plan = platform_plan(env)
        cert = _one(plan, "aws:acm/certificate:Certificate")
        assert cert.inputs["domainName"] == f"*.{env}.endpoints.example.com"
        assert cert.inputs["validationMethod"] == "DNS"
        record = _one(plan, "aws:route53/record:Record")
        assert record.inputs["zoneId"] == cfg.hosted_zone_id
        assert record.inputs["name"] == cert.outputs["domainValidationOptions"][0]["resourceRecordName"]
        validation = _one(plan, "aws:acm/certificateValidation:CertificateValidation")
        assert validation.inputs["certificateArn"] == cert.outputs["arn"]
        assert plan.outputs["endpointCertificateArn"] == cert.outputs["arn"]


def test_endpoint_service_has_its_private_dns_name_and_the_ownership_txt_record(fleet):
    cfg = load_environment("dev")
    for name, (_, plan) in fleet("dev").items():
        service = _one(plan, "aws:ec2/vpcEndpointService:VpcEndpointService")
        assert service.inputs["privateDnsName"] == f"{name}.dev.endpoints.example.com"
        (config,) = service.outputs["privateDnsNameConfigurations"]
        txt = _one(plan, "aws:route53/record:Record")
        assert (txt.inputs["type"], txt.inputs["zoneId"]) == ("TXT", cfg.hosted_zone_id)
        assert txt.inputs["name"] == config["name"]
        assert txt.inputs["records"] == [config["value"]]
        assert plan.outputs["hostname"] == f"{name}.dev.endpoints.example.com"


def test_gateway_deployment_runs_two_hardened_replicas_on_the_system_pool(fleet):
    _, plan = fleet("dev")["chat"]
    deployment = _by_name(plan, "kubernetes:apps/v1:Deployment")["gateway"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("docker.io/envoyproxy/envoy:") and "@sha256:" in container["image"]
    assert pod["nodeSelector"] == {"privend.io/pool": "system"}
    assert "tolerations" not in pod
    sc = container["securityContext"]
    assert (sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"], sc["runAsNonRoot"]) == (False, True, True)
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readinessProbe"]["httpGet"]["path"] == gateway.READY_PATH
    keys_mount = next(m for m in container["volumeMounts"] if m["name"] == "keys")
    assert "subPath" not in keys_mount  # a subPath mount would never see the Secret's updates
    assert pod["volumes"][1] == {"name": "keys", "secret": {"secretName": "gateway-keys"}}
    budget = _by_name(plan, "kubernetes:policy/v1:PodDisruptionBudget")["gateway"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    binding = _one(plan, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
    assert binding.inputs["spec"]["serviceRef"] == {"name": "gateway", "port": 80}


def test_only_the_gateway_reaches_the_engine_and_only_load_balancer_subnets_reach_the_gateway(fleet):
    cfg = load_environment("dev")
    lb_cidrs = sorted(str(s.load_balancers) for s in plan_subnets(cfg.vpc_cidr, cfg.az_count))
    _, plan = fleet("dev")["chat"]
    policies = {k: v["spec"] for k, v in _by_name(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy").items()}
    engine = {"app.kubernetes.io/instance": "chat", "privend.io/endpoint": "chat"}
    gateway_pods = {"app.kubernetes.io/instance": "chat-gateway", "privend.io/endpoint": "chat"}
    serving = policies["allow-serving"]
    assert serving["podSelector"] == {"matchLabels": gateway_pods}
    (rule,) = serving["ingress"]
    assert sorted(p["ipBlock"]["cidr"] for p in rule["from"]) == lb_cidrs
    assert rule["ports"] == [{"protocol": "TCP", "port": render.GATEWAY_PORT}]
    engine_ingress = [(name, p) for name, p in policies.items()
                      if p["podSelector"] == {"matchLabels": engine} and "ingress" in p]
    assert sorted(name for name, _ in engine_ingress) == ["allow-gateway-to-engine", "allow-metrics-scraper"]
    (rule,) = policies["allow-gateway-to-engine"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": gateway_pods}}]
    # No ipBlock reaches the engine any more: the load balancer's subnets stop at the gateway.
    assert all("ipBlock" not in peer for _, p in engine_ingress for r in p["ingress"] for peer in r["from"])
    (egress,) = policies["allow-gateway-egress-to-engine"]["egress"]
    assert egress["to"] == [{"podSelector": {"matchLabels": engine}}]


def test_gateway_key_secret_is_a_pulumi_secret_and_the_config_map_holds_no_key(fleet):
    _, plan = fleet("dev")["chat"]
    secret = next(r for r in plan.by_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "gateway-keys")
    assert secret.secret_paths == ["stringData"] and secret.inputs["stringData"] == "[secret]"
    config = _by_name(plan, "kubernetes:core/v1:ConfigMap")["gateway-config"]
    bootstrap = yaml.safe_load(config["data"]["envoy.yaml"])
    assert "Bearer" not in config["data"]["envoy.yaml"]
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["rds"]["config_source"]["path_config_source"]["path"] == "keys/routes.yaml"


def test_key_routes_list_only_the_keys_the_spec_lists(fleet):
    spec, _ = fleet("dev")["chat"]
    spec = spec.with_api_keys([GatewayKey(name="web", rate_limit_per_minute=60), GatewayKey(name="ci")])
    routes = render.gateway_key_routes(spec, {"web": "pe-web", "ci": "pe-ci", "revoked": "pe-old"})
    names = [r["name"] for r in routes["resources"][0]["virtual_hosts"][0]["routes"]]
    assert names == ["ci", "web", gateway.UNAUTHENTICATED_ROUTE]
    assert "pe-old" not in yaml.safe_dump(routes)


def test_gateway_limits_come_from_the_spec(fleet):
    spec, _ = fleet("dev")["chat"]
    cfg = load_environment("dev")
    changed = spec.model_copy(update={"cold_start_wait_seconds": 120, "max_request_body_bytes": 1024})
    bootstrap = yaml.safe_load(render.gateway_config_map(render.context(changed, cfg))["data"]["envoy.yaml"])
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    buffer = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.buffer")
    assert buffer["typed_config"]["max_request_bytes"] == 1024
    assert hcm["stream_idle_timeout"] == f"{120 + spec.idle_timeout_seconds}s"
    routes = render.gateway_key_routes(changed.with_api_keys([GatewayKey(name="ci")]), {"ci": "pe-ci"})
    policy = routes["resources"][0]["virtual_hosts"][0]["routes"][0]["route"]["retry_policy"]
    assert policy["num_retries"] == gateway.GatewayLimits(cold_start_wait_seconds=120).cold_start_retries
