"""Engine images: the Dockerfiles pin the same digests as the engine catalog and drop root."""

import re
from pathlib import Path

import pytest

from privend.catalog import engine_catalog

IMAGES = Path(__file__).resolve().parent.parent / "images"


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_dockerfile_base_is_the_catalog_pin(engine):
    text = (IMAGES / engine / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert base == engine_catalog().get(engine).reference


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_dockerfile_runs_as_non_root_and_bakes_weights_only_on_request(engine):
    text = (IMAGES / engine / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert "--uid 10001 " in text and "--gid 10001 " in text
    assert 'if [ -n "$MODEL_ID" ]' in text
    assert "--mount=type=secret,id=hf_token" in text
    assert "ARG HF_TOKEN" not in text


def test_tgi_bakes_weights_with_the_servers_own_downloader():
    assert "text-generation-server download-weights" in (IMAGES / "tgi" / "Dockerfile").read_text()


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_the_engine_runs_as_the_same_high_uid_in_the_image_and_the_pod(engine):
    """checkov CKV_K8S_40: containers run as a UID of at least 10000, so none matches a user of the node."""
    from privend.config import load_environment
    from privend.naming import endpoint_names
    from privend.render import ENGINE_UID, render_endpoint
    from privend.spec import build_spec, validate_request, validate_tenant

    cfg = load_environment("dev")
    tenant = validate_tenant(name="acme", aws_account="111122223333")
    spec = build_spec(validate_request(name="chat", tenant="acme", model="meta-llama/Llama-3.1-8B-Instruct",
                                       engine=engine, pool=cfg.gpu_pools[0].name), tenant, cfg)
    engine_name = endpoint_names(cfg.environment, spec.name).deployment
    [deployment] = [o for o in render_endpoint(spec, cfg)
                    if o["kind"] == "Deployment" and o["metadata"]["name"] == engine_name]
    pod = deployment["spec"]["template"]["spec"]
    assert ENGINE_UID >= 10000
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == ENGINE_UID
    for container in pod["containers"]:
        assert container["securityContext"]["runAsUser"] >= 10000
        assert container["securityContext"]["runAsGroup"] >= 10000
    text = (IMAGES / engine / "Dockerfile").read_text()
    assert f"USER {ENGINE_UID}:{ENGINE_UID}" in text


def test_the_gateway_runs_as_a_high_uid_too():
    """checkov CKV_K8S_40 holds for the gateway container as for the engine's."""
    from privend.config import load_environment
    from privend.render import GATEWAY_UID, render_endpoint
    from privend.spec import build_spec, validate_request, validate_tenant

    cfg = load_environment("dev")
    tenant = validate_tenant(name="acme", aws_account="111122223333")
    spec = build_spec(validate_request(name="chat", tenant="acme", model="meta-llama/Llama-3.1-8B-Instruct"), tenant, cfg)
    [gateway] = [o for o in render_endpoint(spec, cfg) if o["kind"] == "Deployment" and "gateway" in o["metadata"]["name"]]
    pod = gateway["spec"]["template"]["spec"]
    assert GATEWAY_UID >= 10000
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (GATEWAY_UID, GATEWAY_UID)
