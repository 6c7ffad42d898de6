"""Warm headroom: the placeholder pods of each shared GPU pool, as rendered and as the platform plan declares them."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from privend import headroom, nodes
from privend.config import load_environment
from privend.policies import rules
from privend.versions import PAUSE_IMAGE
from tests.cli_support import assert_one_line_error, ok, private_stacks, run

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PRIORITY_CLASS = "kubernetes:scheduling.k8s.io/v1:PriorityClass"
ENVS = ["dev", "staging", "prod"]
# The stack files' warmHeadroomGpus, pool by pool (dev and staging's h100 set none: 0).
# Per env and pool: (placeholder pods, GPUs per pod) the stack files ask for.
STACK_HEADROOM = {"dev": {}, "staging": {"l4": (1, 1)}, "prod": {"l40s": (2, 2), "h100": (1, 4)}}


def _placeholders(plan) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r for r in plan.by_type(DEPLOYMENT)
            if r.inputs["metadata"]["namespace"] == headroom.NAMESPACE}


def _pod(deployment) -> dict:
    return deployment.inputs["spec"]["template"]["spec"]


# -- the rendered objects ---------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
def test_every_headroom_object_passes_strict_openapi_validation(env):
    cfg = load_environment(env)
    objects = headroom.render_headroom(cfg)
    assert [o["kind"] for o in objects] == ["PriorityClass", "Namespace", "NetworkPolicy"] + \
        ["Deployment"] * len(STACK_HEADROOM[env])
    for obj in objects:
        kubernetes_validate.validate(obj, cfg.kubernetes_version + ".0", strict=True)


def test_strict_validation_would_catch_a_misspelt_placeholder_field():
    obj = headroom.placeholder_deployment("l40s", 2)
    pod = obj["spec"]["template"]["spec"]
    pod["priorityClass"] = pod.pop("priorityClassName")
    with pytest.raises(kubernetes_validate.ValidationError, match=r"'priorityClass' was unexpected"):
        kubernetes_validate.validate(obj, "1.34.0", strict=True)


def test_a_placeholder_deployment_needs_at_least_one_pod():
    with pytest.raises(ValueError, match="pool l4: a placeholder Deployment needs at least one pod, got 0"):
        headroom.placeholder_deployment("l4", 0)


def test_the_guardrail_checks_the_names_and_numbers_the_renderer_uses():
    assert rules.HEADROOM_PRIORITY_CLASS == headroom.PRIORITY_CLASS
    assert rules.AUTOSCALER_EXPENDABLE_CUTOFF == headroom.AUTOSCALER_EXPENDABLE_CUTOFF
    assert rules.TENANT_KEY == nodes.TENANT_LABEL == nodes.TENANT_TAINT_KEY


# -- where a placeholder can land -------------------------------------------------------------

def _matches(expression: dict, labels: dict[str, str]) -> bool:
    key, op = expression["key"], expression["operator"]
    return {"In": lambda: labels.get(key) in expression["values"],
            "NotIn": lambda: labels.get(key) not in expression["values"],
            "Exists": lambda: key in labels,
            "DoesNotExist": lambda: key not in labels}[op]()


def _tolerates(toleration: dict, taint: nodes.Taint) -> bool:
    if toleration.get("effect") not in (None, taint.effect):
        return False
    if toleration.get("operator") == "Exists":
        return toleration.get("key") in (None, "", taint.key)
    return toleration.get("key") == taint.key and toleration.get("value") == taint.value


def _schedulable(pod: dict, labels: dict[str, str], taints: list[nodes.Taint]) -> bool:
    """The scheduler's filters that decide placement here: node selector, required node affinity, taints."""
    if any(labels.get(k) != v for k, v in (pod.get("nodeSelector") or {}).items()):
        return False
    required = (pod.get("affinity") or {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required and not any(all(_matches(e, labels) for e in term["matchExpressions"])
                            for term in required["nodeSelectorTerms"]):
        return False
    return all(any(_tolerates(t, taint) for t in pod.get("tolerations") or []) for taint in taints)


NODES = {
    "shared l40s": (nodes.gpu_pool_labels("l40s", ["g6e.12xlarge"]), nodes.gpu_pool_taints()),
    "dedicated l40s of globex": (nodes.gpu_pool_labels("l40s", ["g6e.12xlarge"], "globex"),
                                 nodes.gpu_pool_taints("globex")),
    "shared h100": (nodes.gpu_pool_labels("h100", ["p5.48xlarge"]), nodes.gpu_pool_taints()),
    "system": ({nodes.POOL_LABEL: nodes.SYSTEM_POOL}, []),
}


def test_a_placeholder_lands_only_on_its_own_pools_shared_nodes():
    pod = headroom.placeholder_deployment("l40s", 4)["spec"]["template"]["spec"]
    assert {name for name, (labels, taints) in NODES.items() if _schedulable(pod, labels, taints)} == {"shared l40s"}


def test_dedicated_nodes_stay_out_of_reach_by_the_affinity_even_with_a_tenant_toleration():
    # Belt and braces: the tenant taint keeps the placeholder off a dedicated node, and so does the
    # required affinity on its own (a node group may lose its taint; the autoscaler's templates carry both).
    pod = headroom.placeholder_deployment("l40s", 4)["spec"]["template"]["spec"]
    dedicated = NODES["dedicated l40s of globex"]
    tolerant = {**pod, "tolerations": pod["tolerations"] + [nodes.Taint(nodes.TENANT_TAINT_KEY, "globex").toleration()]}
    assert not _schedulable(tolerant, *dedicated)
    unaffine = {k: v for k, v in pod.items() if k != "affinity"}
    assert not _schedulable(unaffine, *dedicated)
    assert _schedulable({k: v for k, v in tolerant.items() if k != "affinity"}, *dedicated)  # both gone: it lands


# -- the platform plan ------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
def test_plan_holds_the_priority_class_and_one_placeholder_deployment_per_warm_pool(platform_plan, env):
    plan = platform_plan(env)
    (pc,) = plan.by_type(PRIORITY_CLASS)
    assert pc.inputs["metadata"]["name"] == "privend-warm-headroom"
    assert (pc.inputs["value"], pc.inputs["globalDefault"], pc.inputs["preemptionPolicy"]) == (-10, False, "Never")
    assert "preempt" in pc.inputs["description"]
    placeholders = _placeholders(plan)
    assert {name: d.inputs["spec"]["replicas"] for name, d in placeholders.items()} == {
        f"warm-headroom-{pool}": pods for pool, (pods, _) in STACK_HEADROOM[env].items()}
    for name, d in placeholders.items():
        pod = _pod(d)
        assert pod["priorityClassName"] == "privend-warm-headroom"
        (container,) = pod["containers"]
        pod_gpus = str(STACK_HEADROOM[env][name.removeprefix("warm-headroom-")][1])
        assert container["resources"]["requests"]["nvidia.com/gpu"] == pod_gpus
        assert container["resources"]["limits"]["nvidia.com/gpu"] == pod_gpus
        assert pod["nodeSelector"] == {"privend.io/pool": name.removeprefix("warm-headroom-")}


def test_placeholders_are_hardened_and_hold_nothing_but_a_gpu(platform_plan):
    for d in _placeholders(platform_plan("prod")).values():
        pod = _pod(d)
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                                       "effect": "NoSchedule"}]
        assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "privend.io/tenant", "operator": "DoesNotExist"}]}]}
        assert pod["automountServiceAccountToken"] is False
        assert pod["terminationGracePeriodSeconds"] == 0
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "volumes" not in pod and "hostNetwork" not in pod
        (container,) = pod["containers"]
        assert container["image"] == PAUSE_IMAGE
        assert container["image"].startswith("registry.k8s.io/pause:") and "@sha256:" in container["image"]
        assert container["securityContext"] == {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
        assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {
            "cpu", "memory", "nvidia.com/gpu"}
        # Pending placeholders are their normal state until the autoscaler has a node: `pulumi up` must not wait.
        assert d.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_headroom_namespace_enforces_restricted_pod_security_and_denies_all_traffic(platform_plan):
    plan = platform_plan("prod")
    (ns,) = [r for r in plan.by_type("kubernetes:core/v1:Namespace")
             if r.inputs["metadata"]["name"] == "privend-headroom"]
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (deny,) = [r for r in plan.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
               if r.inputs["metadata"]["namespace"] == "privend-headroom"]
    assert deny.inputs["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_autoscaler_adds_nodes_for_pods_at_the_placeholders_priority(platform_plan):
    (ca,) = [r for r in platform_plan("prod").by_type("kubernetes:helm.sh/v3:Release")
             if r.inputs["chart"] == "cluster-autoscaler"]
    cutoff = int(ca.inputs["values"]["extraArgs"]["expendable-pods-priority-cutoff"])
    (pc,) = platform_plan("prod").by_type(PRIORITY_CLASS)
    # Pods below the cutoff are expendable and never trigger a scale-up; the placeholders must not be.
    assert cutoff == -10
    assert cutoff <= pc.inputs["value"] < 0


def _plan_json(*args) -> list[dict]:
    return json.loads(ok("plan", "--env", "dev", "--format", "json", *args).stdout)


def _placeholder_replicas(resources: list[dict]) -> dict[str, int]:
    return {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"]["replicas"] for r in resources
            if r["type"] == DEPLOYMENT and r["inputs"]["metadata"]["namespace"] == "privend-headroom"}


def test_changing_warm_headroom_in_the_stack_file_changes_the_plan(monkeypatch, tmp_path):
    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    text = path.read_text()
    assert "warmHeadroomGpus" not in text
    cold = _plan_json()
    assert _placeholder_replicas(cold) == {}
    assert [r["inputs"]["metadata"]["name"] for r in cold if r["type"] == PRIORITY_CLASS] == ["privend-warm-headroom"]
    path.write_text(text.replace("      diskSizeGiB: 200\n", "      diskSizeGiB: 200\n      warmHeadroomGpus: 3\n", 1))
    warm = _plan_json()
    assert _placeholder_replicas(warm) == {"warm-headroom-l4": 3}
    assert len(warm) == len(cold) + 1
    path.write_text(text.replace("      diskSizeGiB: 200\n", "      diskSizeGiB: 200\n      warmHeadroomGpus: 0\n", 1))
    assert _plan_json() == cold


def test_a_negative_warm_headroom_is_one_line_naming_the_file_and_key(monkeypatch, tmp_path):
    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      diskSizeGiB: 200\n",
                                             "      diskSizeGiB: 200\n      warmHeadroomGpus: -2\n", 1))
    before = path.read_text()
    assert_one_line_error(run("plan", "--env", "dev"), 2,
                          "Pulumi.dev.yaml: privend:gpuPools[0].warmHeadroomGpus: Input should be greater than or "
                          "equal to 0")
    assert path.read_text() == before



def test_a_buffer_as_large_as_the_pool_at_max_size_is_accepted(monkeypatch, tmp_path):
    # dev's l4 pool: at most 4 nodes of up to 4 GPUs (g6.12xlarge); 17 is refused (tests/test_config.py).
    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      diskSizeGiB: 200\n",
                                             "      diskSizeGiB: 200\n      warmHeadroomGpus: 16\n", 1))
    objects = headroom.render_headroom(load_environment("dev", stacks))
    assert [(o["metadata"]["name"], o["spec"]["replicas"]) for o in objects if o["kind"] == "Deployment"] == [
        ("warm-headroom-l4", 16)]


def test_placeholders_of_several_gpus_hold_the_headroom_in_whole_pods(monkeypatch, tmp_path):
    # 8 warm GPUs in 2-GPU pods: 4 placeholders, each asking for 2 GPUs on one node.
    stacks = private_stacks(monkeypatch, tmp_path)
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace(
        "      diskSizeGiB: 200\n", "      diskSizeGiB: 200\n      warmHeadroomGpus: 8\n      warmHeadroomPodGpus: 2\n", 1))
    (deployment,) = [o for o in headroom.render_headroom(load_environment("dev", stacks)) if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 4
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] \
        == "2"
    kubernetes_validate.validate(deployment, "1.34.0", strict=True)
    # Warm GPUs that are no whole number of pods are refused in one line.
    path.write_text(path.read_text().replace("warmHeadroomGpus: 8", "warmHeadroomGpus: 7"))
    assert_one_line_error(run("plan", "--env", "dev"), 2,
                          "Pulumi.dev.yaml: privend:gpuPools[0]: warmHeadroomGpus (7) must be a multiple of "
                          "warmHeadroomPodGpus (2)")
    # A placeholder larger than the pool's largest node could never run.
    path.write_text(path.read_text().replace("warmHeadroomGpus: 7\n      warmHeadroomPodGpus: 2",
                                             "warmHeadroomGpus: 8\n      warmHeadroomPodGpus: 8"))
    assert_one_line_error(run("plan", "--env", "dev"), 2,
                          "Pulumi.dev.yaml: privend:gpuPools[0]: warmHeadroomPodGpus (8) is more than the pool's "
                          "largest instance type holds (4 GPUs)")
