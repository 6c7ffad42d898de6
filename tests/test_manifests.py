"""Exported manifests: built-in kinds pass kubernetes-validate --strict, custom resources their CRD schemas."""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest
import yaml

from privend.config import load_environment
from privend.crds import crd_schema, is_custom
from privend.manifests import write_manifests
from privend.render import render_endpoint
from privend.spec import build_spec, validate_request, validate_tenant

VARIANTS = [
    dict(model="meta-llama/Llama-3.1-8B-Instruct", engine="tgi", min_replicas=1, max_replicas=3),
    dict(model="meta-llama/Llama-3.1-8B-Instruct", engine="vllm", min_replicas=0, max_replicas=2),
    dict(model="Qwen/Qwen2.5-72B-Instruct", engine="tgi", pool="h100", quantize="awq"),
    dict(model="mistralai/Mixtral-8x7B-Instruct-v0.1", engine="vllm", pool="l40s",
         image="123456789012.dkr.ecr.us-east-1.amazonaws.com/privend/prod/vllm@sha256:" + "ab" * 32),
]


def _objects(variant, tier="shared", env="prod"):
    cfg = load_environment(env)
    tenant = validate_tenant(name="acme", aws_account="111122223333", tier=tier)
    spec = build_spec(validate_request(name="chat", tenant="acme", **variant), tenant, cfg)
    return spec, cfg, render_endpoint(spec, cfg)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['engine']}-{v['model'].split('/')[1]}")
@pytest.mark.parametrize("tier", ["shared", "dedicated"])
def test_every_builtin_object_passes_strict_openapi_validation(variant, tier):
    version = load_environment("prod").kubernetes_version + ".0"
    _, _, objects = _objects(variant, tier)
    builtin = [o for o in objects if not is_custom(o["apiVersion"], o["kind"])]
    assert {o["kind"] for o in builtin} >= {"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
                                           "ServiceAccount", "Secret", "Deployment", "Service", "PodDisruptionBudget"}
    for obj in builtin:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['engine']}-{v['model'].split('/')[1]}")
def test_custom_resources_match_the_shipped_crd_schemas(variant):
    _, _, objects = _objects(variant)
    custom = [o for o in objects if is_custom(o["apiVersion"], o["kind"])]
    assert {o["kind"] for o in custom} == {"ScaledObject", "TargetGroupBinding"}
    for obj in custom:
        jsonschema.validate(obj, crd_schema(obj["apiVersion"], obj["kind"]))


def test_crd_validation_catches_a_wrong_field():
    _, _, objects = _objects(VARIANTS[0])
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    broken = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "one"}}
    with pytest.raises(jsonschema.ValidationError) as caught:
        jsonschema.validate(broken, crd_schema(broken["apiVersion"], broken["kind"]))
    assert list(caught.value.absolute_path) == ["spec", "minReplicaCount"]
    assert caught.value.message == "'one' is not of type 'integer'"


def test_strict_validation_catches_an_unknown_field():
    _, _, objects = _objects(VARIANTS[0])
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match=r"\('replica' was unexpected\)"):
        kubernetes_validate.validate(broken, "1.34.0", strict=True)


def test_exported_files_round_trip_and_hold_no_secret_values(tmp_path):
    spec, cfg, objects = _objects(VARIANTS[0])
    paths = write_manifests(spec, cfg, tmp_path)
    assert [yaml.safe_load(p.read_text()) for p in paths] == objects
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {"gateway-keys", "hf-token"}
    assert all("data" not in s and "stringData" not in s for s in secrets)
    assert not list(tmp_path.glob(".tmp-*"))


def _container(objects):
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != "gateway")
    return deployment["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]["containers"][0]


def test_tgi_is_configured_only_through_documented_launcher_variables():
    documented = {"MODEL_ID", "REVISION", "NUM_SHARD", "QUANTIZE", "DTYPE", "MAX_INPUT_TOKENS", "MAX_TOTAL_TOKENS",
                  "MAX_BATCH_PREFILL_TOKENS", "MAX_BATCH_TOTAL_TOKENS", "MAX_CONCURRENT_REQUESTS", "API_KEY",
                  "USAGE_STATS", "HUGGINGFACE_HUB_CACHE", "PORT", "HF_TOKEN"}
    spec, _, objects = _objects(dict(model="meta-llama/Llama-3.1-70B-Instruct", pool="h100"))
    pod, container = _container(objects)
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= documented
    assert env["USAGE_STATS"]["value"] == "off"
    assert env["NUM_SHARD"]["value"] == str(spec.gpus_per_replica) == "4"
    assert env["MODEL_ID"]["value"] == "meta-llama/Llama-3.1-70B-Instruct"
    # The gateway authenticates; the engine takes no API key.
    assert "API_KEY" not in env
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    assert "value" not in env["HF_TOKEN"]


def test_engine_container_is_hardened_pinned_and_gpu_bounded():
    _, _, objects = _objects(dict(model="meta-llama/Llama-3.1-70B-Instruct", pool="h100"))
    pod, container = _container(objects)
    assert "@sha256:" in container["image"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["limits"]["memory"].endswith("Gi")
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 600
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/health"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    shm = next(v for v in pod["volumes"] if v["name"] == mounts["/dev/shm"])
    assert shm["emptyDir"]["medium"] == "Memory"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"privend.io/pool": "h100"}
    assert pod["automountServiceAccountToken"] is False


def test_single_gpu_replica_gets_no_shared_memory_volume():
    _, _, objects = _objects(VARIANTS[0])
    pod, container = _container(objects)
    assert "/dev/shm" not in {m["mountPath"] for m in container["volumeMounts"]}
    assert not [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]


def test_vllm_gets_the_same_spec_through_its_flags_with_usage_stats_off():
    spec, _, objects = _objects(dict(model="Qwen/Qwen2.5-72B-Instruct", engine="vllm", pool="h100", quantize="awq"))
    _, container = _container(objects)
    args = container["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))  # every flag has its value
    assert flags["--model"] == "Qwen/Qwen2.5-72B-Instruct"
    assert flags["--tensor-parallel-size"] == str(spec.gpus_per_replica)
    assert flags["--quantization"] == "awq"
    assert flags["--max-model-len"] == str(spec.max_total_tokens)
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_NO_USAGE_STATS"]["value"] == "1"
    assert "VLLM_API_KEY" not in env


def test_namespace_enforces_restricted_pod_security():
    _, _, objects = _objects(VARIANTS[0])
    labels = objects[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_scale_to_zero_wakes_on_the_gateways_pending_requests():
    _, _, objects = _objects(VARIANTS[1])
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    assert scaled["spec"]["minReplicaCount"] == 0
    assert [t["name"] for t in scaled["spec"]["triggers"]] == ["queue-depth", "gateway-pending-requests"]
    wake = scaled["spec"]["triggers"][1]
    assert wake["type"] == "metrics-api"
    assert wake["metadata"]["url"] == ("http://gateway.ep-chat.svc.cluster.local:9102"
                                       "/stats?filter=^http.ingress.downstream_rq_active$&format=json")
    assert (wake["metadata"]["valueLocation"], wake["metadata"]["activationTargetValue"]) == ("stats.0.value", "0")


def test_baked_image_needs_no_model_hub_and_no_token():
    _, _, objects = _objects(VARIANTS[3])
    pod, container = _container(objects)
    assert container["image"] == VARIANTS[3]["image"]
    assert "allow-model-hub" not in {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert "hf-token" not in {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    assert "HF_TOKEN" not in {e["name"] for e in container["env"]}


def test_image_must_be_stock_or_pinned_by_digest():
    from privend.errors import InputError

    with pytest.raises(InputError, match=r"image 'repo/tgi:latest' must be 'stock' or a baked image pinned by digest"):
        validate_request(name="chat", tenant="acme", model="meta-llama/Llama-3.1-8B-Instruct", image="repo/tgi:latest")
