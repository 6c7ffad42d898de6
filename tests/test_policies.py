"""Guardrails: every rule passes on the compliant plans and catches a deliberately broken one.

Broken variants come from the real programs: a broken spec or stack config, a
monkeypatched renderer or component (a regression someone could write), or,
where nothing but code could break a property, a copy of the real plan with
that one input changed.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from privend.policies import rules
from privend.cli import main
from privend.config import load_environment, stack_file
from privend.plan import plan_endpoint
from privend.policy import evaluate, mandatory
from privend.spec import EndpointSpec

ROOT = Path(__file__).resolve().parent.parent

# The CLI tests below record endpoints, whose `endpoint create` checks EC2 quotas where AWS credentials exist.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def _rules_hit(violations):
    return {v.rule for v in violations}


@pytest.fixture(scope="module")
def compliant(platform_plan, fleet):
    return [platform_plan("dev"), *[plan for _, plan in fleet("dev").values()]]


def test_compliant_dev_environment_with_several_endpoints_has_no_violation(compliant):
    assert evaluate(compliant, load_environment("dev")) == []


def test_compliant_prod_platform_has_no_violation(platform_plan):
    assert evaluate([platform_plan("prod")], load_environment("prod")) == []


def test_every_rule_has_a_fix_and_a_known_enforcement_level():
    for rule in rules.RULES:
        assert rule.description
        assert rule.enforcement in (rules.MANDATORY, rules.ADVISORY)
        assert sum(x is not None for x in (rule.check, rule.stack_check, rule.plan_check)) == 1


def _plan_spec(spec: EndpointSpec, platform_plan):
    cfg = load_environment("dev")
    return plan_endpoint(spec, cfg, platform_plan("dev")), cfg


def _broken_spec(fleet, name="chat", **changes) -> EndpointSpec:
    spec, _ = fleet("dev")[name]
    return EndpointSpec.model_construct(**{**spec.model_dump(), **changes})


def _mutated(plan, type_, mutate):
    """A copy of a real plan with one resource's inputs changed."""
    plan = copy.deepcopy(plan)
    target = next(r for r in plan.resources if r.type == type_)
    mutate(target.inputs)
    return plan


def _violations_for(plans, rule_name, env="dev"):
    found = [v for v in evaluate(plans, load_environment(env), include_config=False) if v.rule == rule_name]
    assert found, f"{rule_name} not triggered"
    assert all(v.fix == rules.rules_by_name()[rule_name].description for v in found)
    return found


# -- one violating case per rule, each from the real programs ----------------------------------

def test_required_tags_catches_an_endpoint_resource_without_endpoint_tag(fleet, platform_plan, monkeypatch):
    import privend.endpoint_program as program

    original = program.endpoint_tags
    monkeypatch.setattr(program, "endpoint_tags", lambda cfg, spec: {
        k: v for k, v in original(cfg, spec).items() if k != "privend.io/endpoint"})
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    found = _violations_for([plan], "required-tags")
    assert any("lacks tag(s) privend.io/endpoint" in v.message for v in found)


def test_required_tags_catches_platform_resources_without_cost_tags(platform_plan):
    plan = _mutated(platform_plan("dev"), "aws:ec2/vpc:Vpc", lambda i: i["tags"].pop("cost-center"))
    (violation,) = _violations_for([plan], "required-tags")
    assert violation.message == "aws:ec2/vpc:Vpc network-vpc lacks tag(s) cost-center"


def test_endpoint_object_labels_catches_unlabelled_objects(fleet, platform_plan, monkeypatch):
    from privend import render

    original = render.RenderContext.labels.fget
    monkeypatch.setattr(render.RenderContext, "labels",
                        property(lambda self: {k: v for k, v in original(self).items() if k != "privend.io/tenant"}))
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    assert any("lacks label(s) privend.io/tenant" in v.message for v in _violations_for([plan], "endpoint-object-labels"))


def test_launch_template_without_imdsv2_is_caught(platform_plan):
    plan = _mutated(platform_plan("dev"), "aws:ec2/launchTemplate:LaunchTemplate",
                    lambda i: i["metadataOptions"].update(httpTokens="optional"))
    assert [v.message for v in _violations_for([plan], "launch-template-hardening")] == [
        "launch template gpu-l4-lt does not require IMDSv2"]


def test_launch_template_with_unencrypted_volume_is_caught(platform_plan):
    plan = _mutated(platform_plan("dev"), "aws:ec2/launchTemplate:LaunchTemplate",
                    lambda i: i["blockDeviceMappings"][0]["ebs"].update(encrypted="false"))
    assert "unencrypted volume /dev/xvda" in _violations_for([plan], "launch-template-hardening")[0].message


def test_gpu_node_group_outside_the_catalog_is_caught(platform_plan):
    plan = copy.deepcopy(platform_plan("dev"))
    next(r for r in plan.resources if r.name == "gpu-l4-ng").inputs["instanceTypes"] = ["g4dn.xlarge"]
    assert "outside the GPU catalog: g4dn.xlarge" in _violations_for([plan], "gpu-node-groups")[0].message


def test_node_group_in_a_nat_subnet_is_caught(platform_plan):
    plan = copy.deepcopy(platform_plan("dev"))
    nat = next(r for r in plan.resources if r.name == "network-nat-0" and r.type == "aws:ec2/subnet:Subnet")
    next(r for r in plan.resources if r.name == "gpu-l4-ng").inputs["subnetIds"][0] = nat.id
    (violation,) = _violations_for([plan], "gpu-node-groups-private-subnets")
    assert violation.message == f"node group gpu-l4-ng is placed in a nat subnet ({nat.id})"


def test_public_load_balancer_is_caught(fleet, platform_plan, monkeypatch):
    import privend.components.endpoint as component

    real = component.aws.lb.LoadBalancer

    def public(resource_name, **kwargs):
        return real(resource_name, **{**kwargs, "internal": False})
    monkeypatch.setattr(component.aws.lb, "LoadBalancer", public)
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    (violation,) = _violations_for([plan], "internal-load-balancers")
    assert violation.message == "load balancer chat-nlb is internet-facing"


@pytest.mark.parametrize("protocol", ["TCP", "HTTP"])
def test_plain_tcp_or_http_serving_listener_is_caught(fleet, protocol):
    _, plan = fleet("dev")["chat"]
    broken = _mutated(plan, "aws:lb/listener:Listener", lambda i: i.update(protocol=protocol, port=80))
    (violation,) = _violations_for([broken], "tls-serving-listener")
    assert violation.message == f"listener chat-listener serves {protocol}, not TLS"


def test_tls_listener_without_a_tls13_policy_or_certificate_is_caught(fleet):
    _, plan = fleet("dev")["chat"]
    broken = _mutated(plan, "aws:lb/listener:Listener",
                      lambda i: (i.update(sslPolicy="ELBSecurityPolicy-2016-08"), i.pop("certificateArn")))
    messages = sorted(v.message for v in _violations_for([broken], "tls-serving-listener"))
    assert messages == ["listener chat-listener has no TLS 1.3 security policy",
                        "listener chat-listener has no certificate"]


def test_security_group_open_to_the_world_on_the_serving_port_is_caught(fleet):
    _, plan = fleet("dev")["chat"]
    broken = _mutated(plan, "aws:ec2/securityGroup:SecurityGroup",
                      lambda i: i["ingress"].append({"protocol": "tcp", "fromPort": 80, "toPort": 80,
                                                     "cidrBlocks": ["0.0.0.0/0"]}))
    assert _violations_for([broken], "no-world-open-serving-port")[0].message == \
        "security group chat-nlb opens a serving port to 0.0.0.0/0"


def test_wildcard_principal_is_caught(fleet, platform_plan):
    plan, _ = _plan_spec(_broken_spec(fleet, allowed_principals=["*"]), platform_plan)
    assert "wildcard principal '*'" in _violations_for([plan], "endpoint-service-principals")[0].message


def test_principal_of_another_account_is_caught(fleet, platform_plan):
    plan, _ = _plan_spec(_broken_spec(fleet, allowed_principals=["arn:aws:iam::999999999999:root"]), platform_plan)
    assert _violations_for([plan], "endpoint-service-principals")[0].message == (
        "endpoint service chat-service allows arn:aws:iam::999999999999:root, which is not in the tenant's "
        "account 111122223333")


def test_unpinned_image_is_caught(fleet, platform_plan):
    plan, _ = _plan_spec(_broken_spec(fleet, image="ghcr.io/huggingface/text-generation-inference:latest"), platform_plan)
    messages = [v.message for v in _violations_for([plan], "engine-containers")]
    assert "container chat-deployment-engine/engine image 'ghcr.io/huggingface/text-generation-inference:latest' " \
           "is not pinned by digest" in messages


def test_image_from_an_unlisted_registry_is_caught(fleet, platform_plan):
    plan, _ = _plan_spec(_broken_spec(fleet, image="quay.io/someone/tgi@sha256:" + "0" * 64), platform_plan)
    assert any("not from an allowed registry" in v.message for v in _violations_for([plan], "engine-containers"))


def test_root_container_is_caught(fleet, platform_plan, monkeypatch):
    from privend import render

    original = render.deployment

    def rooted(ctx, with_hf_token):
        obj = original(ctx, with_hf_token)
        pod = obj["spec"]["template"]["spec"]
        pod["securityContext"].update(runAsNonRoot=False, runAsUser=0)
        pod["containers"][0]["securityContext"].pop("runAsNonRoot")
        return obj
    monkeypatch.setattr(render, "deployment", rooted)
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    assert any("may run as root" in v.message for v in _violations_for([plan], "engine-containers"))


def test_tgi_reporting_usage_stats_is_caught(fleet, platform_plan, monkeypatch):
    from privend import render

    original = render.tgi_environment
    monkeypatch.setattr(render, "tgi_environment", lambda *a: [e for e in original(*a) if e["name"] != "USAGE_STATS"])
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    assert any("without USAGE_STATS=off" in v.message for v in _violations_for([plan], "engine-containers"))


def test_token_passed_as_plain_container_env_is_caught(fleet, platform_plan, monkeypatch):
    from privend import render

    original = render.tgi_environment

    def inline_token(*args):
        env = [e for e in original(*args) if e["name"] != "HF_TOKEN"]
        return env + [{"name": "HF_TOKEN", "value": "hf_" + "c" * 34}]
    monkeypatch.setattr(render, "tgi_environment", inline_token)
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    messages = {v.message for v in _violations_for([plan], "no-plaintext-credentials")}
    assert "container chat-deployment-engine/engine sets HF_TOKEN as a plain value, not a secretKeyRef" in messages
    assert any("holds a Hugging Face token in plain text" in m for m in messages)


def test_kubernetes_secret_data_stays_a_pulumi_secret_even_if_passed_plain(fleet, platform_plan, monkeypatch):
    # The Kubernetes SDK wraps Secret data in Output.secret itself; the offline
    # check relies on that marker, so a regression there would show here.
    import privend.components.endpoint as component
    import pulumi_kubernetes as k8s

    def plain_secret(self, name, key, value, opts):
        return k8s.core.v1.Secret(f"{self._name}-secret-{name}", metadata={"name": name, "namespace": self.namespace},
                                  string_data={key: "plain-value"}, opts=opts)
    monkeypatch.setattr(component.Endpoint, "_secret", plain_secret)
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    secrets = [r for r in plan.resources if r.type == "kubernetes:core/v1:Secret"]
    assert secrets
    assert all(r.secret_paths == ["stringData"] for r in secrets)
    assert "plain-value" not in str([r.inputs for r in plan.resources])


def test_plaintext_token_in_stack_config_is_caught(tmp_path, monkeypatch, platform_plan):
    document = yaml.safe_load(stack_file("dev").read_text())
    document["config"]["privend:hfToken"] = "hf_" + "a" * 34
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(tmp_path))
    (violation,) = [v for v in evaluate([platform_plan("dev")], load_environment("dev"), stacks_dir=tmp_path) if v.rule == "no-plaintext-credentials"]
    assert violation.message == "privend:hfToken (the Hugging Face token) is stored in plain text in the stack config"
    assert "pulumi config set --secret privend:hfToken -s dev" in violation.fix


def test_table_without_point_in_time_recovery_is_caught(platform_plan):
    plan = _mutated(platform_plan("dev"), "aws:dynamodb/table:Table", lambda i: i.update(pointInTimeRecovery={"enabled": False}))
    assert _violations_for([plan], "data-encryption")[0].message == "table data-registry has no point-in-time recovery"


def test_mutable_ecr_tags_are_caught(platform_plan):
    plan = _mutated(platform_plan("dev"), "aws:ecr/repository:Repository", lambda i: i.update(imageTagMutability="MUTABLE"))
    assert "allows tags to be overwritten" in _violations_for([plan], "data-encryption")[0].message


def test_missing_default_deny_network_policy_is_caught(fleet, platform_plan, monkeypatch):
    from privend import render

    original = render.network_policies
    monkeypatch.setattr(render, "network_policies",
                        lambda ctx, hub: [p for p in original(ctx, hub) if p["metadata"]["name"] != "default-deny"])
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    (violation,) = _violations_for([plan], "tenant-namespace")
    assert violation.message == "namespace ep-chat has no default-deny NetworkPolicy"


def test_namespace_without_restricted_pod_security_is_caught(fleet):
    _, plan = fleet("dev")["chat"]
    broken = _mutated(plan, "kubernetes:core/v1:Namespace",
                      lambda i: i["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}))
    assert "does not enforce Pod Security Standard restricted" in _violations_for([broken], "tenant-namespace")[0].message


def test_stack_mixing_tenants_is_caught(fleet, platform_plan, monkeypatch):
    import privend.endpoint_program as program

    original = program.endpoint_tags
    monkeypatch.setattr(program, "endpoint_tags", lambda cfg, spec: {**original(cfg, spec), "privend.io/tenant": "globex"})
    plan, _ = _plan_spec(fleet("dev")["chat"][0], platform_plan)
    assert "several tenants: acme, globex" in _violations_for([plan], "single-tenant-stack")[0].message


def test_two_endpoint_stacks_sharing_a_namespace_are_caught(fleet, platform_plan):
    spec, plan = fleet("dev")["chat"]
    twin = copy.deepcopy(plan)
    twin.stack = "dev-chat-copy"
    violations = _violations_for([plan, twin], "no-shared-isolation-resources")
    assert any("kubernetes:core/v1:Namespace ep-chat is shared by stacks dev-chat and dev-chat-copy" == v.message
               for v in violations)


# -- warm headroom placeholders (the prod platform keeps a warm buffer in both pools) ----------------

HEADROOM = "warm-headroom-placeholders"


def _placeholder(plan, pool="l40s"):
    return next(r for r in plan.resources if r.type == "kubernetes:apps/v1:Deployment" and r.name == f"headroom-{pool}")


def _with_placeholder(plan, mutate, pool="l40s"):
    plan = copy.deepcopy(plan)
    mutate(_placeholder(plan, pool).inputs["spec"]["template"]["spec"])
    return plan


def test_real_placeholders_and_their_priority_class_pass_the_headroom_guardrail(platform_plan):
    plan = platform_plan("prod")
    placeholders = [r for r in plan.by_type("kubernetes:apps/v1:Deployment")
                    if r.inputs["spec"]["template"]["spec"].get("priorityClassName") == "privend-warm-headroom"]
    assert sorted(r.name for r in placeholders) == ["headroom-h100", "headroom-l40s"]
    assert len(plan.by_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")) == 1
    assert [v for v in evaluate([plan], load_environment("prod"), include_config=False) if v.rule == HEADROOM] == []


def test_placeholder_tolerating_a_tenant_taint_is_caught(platform_plan):
    tenant = {"key": "privend.io/tenant", "operator": "Equal", "value": "globex", "effect": "NoSchedule"}
    plan = _with_placeholder(platform_plan("prod"), lambda pod: pod["tolerations"].append(tenant))
    (violation,) = _violations_for([plan], HEADROOM, "prod")
    assert violation.message == "placeholder headroom-l40s tolerates the tenant taint privend.io/tenant=globex"


def test_placeholder_tolerating_every_taint_is_caught(platform_plan):
    plan = _with_placeholder(platform_plan("prod"), lambda pod: pod.update(tolerations=[{"operator": "Exists"}]))
    (violation,) = _violations_for([plan], HEADROOM, "prod")
    assert violation.message == "placeholder headroom-l40s tolerates every taint, the tenant taint among them"


def test_placeholders_without_the_dedicated_exclusion_are_caught(platform_plan, monkeypatch):
    # A renderer that keeps placeholders on GPU nodes but forgets the dedicated tier.
    from privend import headroom
    from privend.plan import plan_platform

    monkeypatch.setattr(headroom, "shared_node_affinity", lambda: {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "privend.io/gpu-model", "operator": "Exists"}]}]}}})
    plan = plan_platform(load_environment("prod"))
    found = _violations_for([plan], HEADROOM, "prod")
    assert sorted(v.message for v in found) == [
        f"placeholder headroom-{pool} does not exclude dedicated-tier nodes (required node affinity "
        "privend.io/tenant DoesNotExist)" for pool in ("h100", "l40s")]


def test_a_second_node_selector_term_without_the_exclusion_is_caught(platform_plan):
    # Terms are ORed: one term that admits tenant nodes admits them, whatever the others say.
    def widen(pod):
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        terms.append({"matchExpressions": [{"key": "privend.io/pool", "operator": "In", "values": ["l40s"]}]})
    (violation,) = _violations_for([_with_placeholder(platform_plan("prod"), widen)], HEADROOM, "prod")
    assert "headroom-l40s does not exclude dedicated-tier nodes" in violation.message


def test_an_endpoint_workload_with_the_placeholder_class_is_held_to_the_same_rule(fleet):
    # The dedicated endpoint tolerates its tenant's taint and selects its nodes: as a placeholder, refused.
    _, plan = fleet("dev")["private"]
    broken = copy.deepcopy(plan)
    engine = next(r for r in broken.by_type("kubernetes:apps/v1:Deployment")
                  if r.inputs["spec"]["template"]["spec"].get("tolerations"))
    engine.inputs["spec"]["template"]["spec"]["priorityClassName"] = "privend-warm-headroom"
    messages = sorted(v.message for v in _violations_for([broken], HEADROOM))
    assert messages == [
        f"placeholder {engine.name} does not exclude dedicated-tier nodes (required node affinity privend.io/tenant "
        "DoesNotExist)",
        f"placeholder {engine.name} selects a tenant's nodes (privend.io/tenant: globex)",
        f"placeholder {engine.name} tolerates the tenant taint privend.io/tenant=globex",
    ]


@pytest.mark.parametrize("change,message", [
    (dict(globalDefault=True),
     "priority class privend-warm-headroom is the global default: every pod without a class would be a placeholder"),
    (dict(preemptionPolicy="PreemptLowerPriority"),
     "priority class privend-warm-headroom lets placeholders preempt other pods (preemptionPolicy is not Never)"),
    (dict(value=-1000),
     "priority class privend-warm-headroom has the value -1000; placeholders need a negative value not below -10, "
     "or endpoints cannot preempt them or the autoscaler never refills them"),
    (dict(value=0),
     "priority class privend-warm-headroom has the value 0; placeholders need a negative value not below -10, "
     "or endpoints cannot preempt them or the autoscaler never refills them"),
])
def test_a_placeholder_priority_class_that_breaks_the_pattern_is_caught(platform_plan, change, message):
    plan = _mutated(platform_plan("prod"), "kubernetes:scheduling.k8s.io/v1:PriorityClass", lambda i: i.update(change))
    (violation,) = _violations_for([plan], HEADROOM, "prod")
    assert violation.message == message


def test_another_negative_priority_class_is_caught(platform_plan):
    plan = copy.deepcopy(platform_plan("prod"))
    (pc,) = plan.by_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    other = copy.deepcopy(pc)
    other.name, other.urn = "batch-priority", pc.urn.replace(pc.name, "batch-priority")
    other.inputs.update(value=-5, metadata={"name": "batch-low"})
    plan.resources.append(other)
    (violation,) = _violations_for([plan], HEADROOM, "prod")
    assert violation.message == ("priority class batch-low has the negative value -5: negative priority is kept for "
                                 "the warm headroom placeholders (privend-warm-headroom)")


def test_pack_config_can_turn_a_rule_advisory(tmp_path, monkeypatch, fleet, platform_plan):
    import privend.policy as policy

    config = tmp_path / "policy-config.json"
    config.write_text('{"internal-load-balancers": {"enforcementLevel": "advisory"}}')
    monkeypatch.setattr(policy, "PACK_CONFIG", config)
    plan = _mutated(fleet("dev")["chat"][1], "aws:lb/loadBalancer:LoadBalancer", lambda i: i.update(internal=False))
    found = evaluate([plan], load_environment("dev"), include_config=False)
    assert len(found) == 1, found
    (violation,) = found
    assert violation.rule == "internal-load-balancers"
    assert violation.message == "load balancer chat-nlb is internet-facing"
    assert violation.level == "advisory"
    assert mandatory([violation]) == []


# -- where it runs ------------------------------------------------------------------------------

def _seed(runner, *extra):
    assert runner.invoke(main, ["tenant", "create", "acme", "--aws-account", "111122223333"]).exit_code == 0
    result = runner.invoke(main, ["endpoint", "create", "chat", "--tenant", "acme", "--no-deploy",
                                  "--model", "meta-llama/Llama-3.1-8B-Instruct", *extra])
    assert result.exit_code == 0, result.output


def test_plan_exits_3_naming_rule_and_fix_for_a_public_load_balancer(monkeypatch):
    import privend.components.endpoint as component

    runner = CliRunner()
    _seed(runner)
    real = component.aws.lb.LoadBalancer
    monkeypatch.setattr(component.aws.lb, "LoadBalancer", lambda resource_name, **kw: real(resource_name, **{**kw, "internal": False}))
    result = runner.invoke(main, ["plan", "--env", "dev", "--format", "json"])
    assert result.exit_code == 3
    assert "[mandatory] dev-chat: internal-load-balancers: load balancer chat-nlb is internet-facing" in result.stderr
    assert "fix: Endpoint load balancers must be internal" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 mandatory guardrail violation(s)")


def test_policy_check_passes_a_compliant_environment_and_fails_a_plaintext_token(tmp_path, monkeypatch):
    runner = CliRunner()
    _seed(runner)
    ok = runner.invoke(main, ["policy", "check", "--env", "dev"])
    assert ok.exit_code == 0
    assert "no guardrail violations in env dev" in ok.stdout
    document = yaml.safe_load(stack_file("dev").read_text())
    document["config"]["privend:hfToken"] = "hf_" + "b" * 34
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(tmp_path))
    result = runner.invoke(main, ["policy", "check", "--env", "dev", "--format", "json"])
    assert result.exit_code == 3
    import json
    (violation,) = json.loads(result.stdout)["violations"]
    assert violation["rule"] == "no-plaintext-credentials"


def test_endpoint_create_refuses_a_violating_spec_before_recording(monkeypatch):
    from privend import render

    runner = CliRunner()
    assert runner.invoke(main, ["tenant", "create", "acme", "--aws-account", "111122223333"]).exit_code == 0
    original = render.network_policies
    monkeypatch.setattr(render, "network_policies",
                        lambda ctx, hub: [p for p in original(ctx, hub) if p["metadata"]["name"] != "default-deny"])
    result = runner.invoke(main, ["endpoint", "create", "chat", "--tenant", "acme", "--no-deploy",
                                  "--model", "meta-llama/Llama-3.1-8B-Instruct"])
    assert result.exit_code == 3
    assert result.stderr.startswith("error: endpoint 'chat' violates tenant-namespace: namespace ep-chat has no "
                                    "default-deny NetworkPolicy; fix:")
    listed = runner.invoke(main, ["endpoint", "list", "--env", "dev", "--format", "json"])
    assert listed.stdout.strip() == "[]"


def _load_pack_module():
    spec = importlib.util.spec_from_file_location("privend_policy_pack", ROOT / "policies" / "__main__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_main_imports_in_a_subprocess_without_serving():
    code = ("import importlib.util as u; s = u.spec_from_file_location('pack', 'policies/__main__.py'); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(len(m.load_context().gpu_instance_types))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 20


def test_pack_validation_functions_report_what_the_rules_find(fleet):
    from pulumi_policy import ResourceValidationArgs, StackValidationArgs
    from pulumi_policy.policy import PolicyResource

    pack = _load_pack_module()
    ctx = pack.load_context(cost_tags=("cost-center",))
    lb_rule = rules.rules_by_name()["internal-load-balancers"]
    policy = pack.resource_policy(lb_rule, ctx)
    _, plan = fleet("dev")["chat"]
    lb = next(r for r in plan.resources if r.type == "aws:lb/loadBalancer:LoadBalancer")
    reported = []
    args = ResourceValidationArgs(lb.type, {**lb.inputs, "internal": False}, lb.urn, lb.name, None, None)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    assert reported == ["load balancer chat-nlb is internet-facing"]
    reported.clear()
    policy.validate(ResourceValidationArgs(lb.type, lb.inputs, lb.urn, lb.name, None, None),
                    lambda message, urn=None: reported.append(message))
    assert reported == []

    ns_policy = pack.stack_policy(rules.rules_by_name()["tenant-namespace"], ctx)
    resources = [PolicyResource(r.type, r.inputs, r.urn, r.name, None, None, None, [], {})
                 for r in plan.resources if not (r.type.endswith("NetworkPolicy") and r.inputs["metadata"]["name"] == "default-deny")]
    ns_policy.validate(StackValidationArgs(resources, {}), lambda message, urn=None: reported.append(message))
    assert reported == ["namespace ep-chat has no default-deny NetworkPolicy"]


def test_pack_refuses_a_placeholder_with_a_tenant_toleration_under_the_engine(platform_plan):
    from pulumi_policy import ResourceValidationArgs

    pack = _load_pack_module()
    policy = pack.resource_policy(rules.rules_by_name()[HEADROOM], pack.load_context())
    real = _placeholder(platform_plan("prod"), "h100")
    broken = copy.deepcopy(real.inputs)
    broken["spec"]["template"]["spec"]["tolerations"].append({"key": "privend.io/tenant", "operator": "Exists"})
    reported = []
    for inputs in (real.inputs, broken):
        policy.validate(ResourceValidationArgs(real.type, inputs, real.urn, real.name, None, None),
                        lambda message, urn=None: reported.append(message))
    assert reported == ["placeholder headroom-h100 tolerates the tenant taint privend.io/tenant=*"]
