"""`privend endpoint connect-info`, `privend export manifests` and `privend plan` over the recorded endpoints.

`world` (conftest) holds two tenants and three endpoints in dev, recorded
without deploying; `deployer` (conftest) stands in for the deploy layer where a
test needs an endpoint deployed.
"""

from __future__ import annotations

import json

import pytest

from privend.connect import OFFLINE_SERVICE_NAME
from tests.cli_support import APP_ROLE, MODEL_8B, assert_one_line_error, ok, run


# `endpoint create` checks EC2 quotas where AWS credentials exist: keep every test away from AWS.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


# -- connect-info --


def test_connect_info_offline_prints_placeholder_service_name_and_every_recipe(world):
    out = ok("endpoint", "connect-info", "chat-bot").stdout
    assert "# Connect to endpoint chat-bot (acme, dev)" in out
    assert f"Service name:     {OFFLINE_SERVICE_NAME}" in out
    assert f"Allowed:          {APP_ROLE}" in out
    assert (
        "aws ec2 create-vpc-endpoint \\\n"
        "  --region us-east-1 \\\n"
        "  --vpc-endpoint-type Interface \\\n"
        "  --vpc-id <your-vpc-id> \\\n"
        f"  --service-name {OFFLINE_SERVICE_NAME} \\\n"
        "  --subnet-ids <subnet-id-az1> <subnet-id-az2> \\\n"
        "  --security-group-ids <sg-allowing-tcp-443-from-your-clients> \\\n"
        "  --private-dns-enabled\n"
    ) in out
    assert "URL:              https://chat-bot.dev.endpoints.example.com" in out
    assert "  private_dns_enabled = true" in out
    assert "    private_dns_enabled=True," in out
    assert "curl https://chat-bot.dev.endpoints.example.com/v1/chat/completions" in out
    assert 'resource "aws_vpc_endpoint" "chat_bot" {' in out
    assert f'  service_name        = "{OFFLINE_SERVICE_NAME}"' in out
    assert 'chat_bot_endpoint = aws.ec2.VpcEndpoint(\n    "chat-bot",' in out
    assert f'    service_name="{OFFLINE_SERVICE_NAME}",' in out
    assert '-H "Authorization: Bearer $PRIVEND_API_KEY"' in out
    assert f'"model": "{MODEL_8B}"' in out
    assert "privend endpoint key create\nNAME --endpoint chat-bot" in out


def test_connect_info_of_a_deployed_endpoint_uses_its_service_name_and_never_prints_the_api_key(
        world, deployer, monkeypatch):
    import privend.stack_outputs

    ok("endpoint", "sync")
    service = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
    api_key = "pe-live-3f9a1c7d2b8e4f60a5c1"
    monkeypatch.setattr(privend.stack_outputs, "endpoint_outputs",
                        lambda settings, cfg, name: {"serviceName": service, "apiKey": api_key} if name == "coder" else {})
    out = ok("endpoint", "connect-info", "coder").stdout
    assert f"--service-name {service} \\" in out
    assert f'service_name        = "{service}"' in out
    assert f'service_name="{service}",' in out
    assert OFFLINE_SERVICE_NAME not in out
    assert api_key not in out
    bearer_lines = [line for line in out.splitlines() if "Authorization" in line]
    assert bearer_lines == ['  -H "Authorization: Bearer $PRIVEND_API_KEY" \\']


def test_connect_info_of_an_undeployed_endpoint_ignores_outputs(world, monkeypatch):
    import privend.stack_outputs

    # A stack of that name may exist from an earlier life; the endpoint record says it is not deployed.
    monkeypatch.setattr(privend.stack_outputs, "endpoint_outputs", lambda settings, cfg, name: {"serviceName": "stale"})
    out = ok("endpoint", "connect-info", "tiny").stdout
    assert "stale" not in out
    assert OFFLINE_SERVICE_NAME in out


# -- export and plan --


def test_export_manifests_writes_one_yaml_file_per_object(world, tmp_path):
    import yaml

    out_dir = tmp_path / "manifests"
    result = ok("export", "manifests", "--endpoint", "chat-bot", "--out", str(out_dir))
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    assert result.stdout == (f"wrote {len(files)} manifests and the gateway's Envoy config "
                             f"({out_dir / 'gateway' / 'envoy.yaml'}) for endpoint 'chat-bot' to {out_dir}\n")
    assert "00-namespace-ep-chat-bot.yaml" in files
    assert any(name.endswith("-deployment-engine.yaml") for name in files)
    assert not any(name.startswith(".tmp-") for name in files)
    documents = [yaml.safe_load((out_dir / name).read_text()) for name in files]
    assert all(d["metadata"]["labels"]["privend.io/endpoint"] == "chat-bot" for d in documents)
    deployment = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "engine")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_ID"]["value"] == MODEL_8B
    secrets = [d for d in documents if d["kind"] == "Secret"]
    assert secrets
    assert all("data" not in s and "stringData" not in s for s in secrets)


def test_exported_gateway_config_validates_with_envoy_from_its_directory_and_holds_no_key(world, deployer, tmp_path):
    import re
    import subprocess

    from tests.gateway_support import envoy_binary

    created = ok("endpoint", "key", "create", "ci", "--endpoint", "chat-bot", "--no-deploy").stdout
    secret = re.search(r"(pe-\S+)", created.split("shown once")[1]).group(1)
    out_dir = tmp_path / "manifests"
    ok("export", "manifests", "--endpoint", "chat-bot", "--out", str(out_dir))
    gateway_dir = out_dir / "gateway"
    assert sorted(str(p.relative_to(gateway_dir)) for p in gateway_dir.rglob("*") if p.is_file()) == \
        ["envoy.yaml", "keys/routes.yaml"]
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", "envoy.yaml", "--disable-hot-restart"],
                            cwd=gateway_dir, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    for path in out_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(), path
            assert "Bearer pe-" not in path.read_text(), path


def test_export_manifests_of_unknown_endpoint_writes_nothing(world, tmp_path):
    out_dir = tmp_path / "manifests"
    assert_one_line_error(run("export", "manifests", "--endpoint", "nope", "--out", str(out_dir)), 2,
                          "endpoint 'nope' not found in env dev")
    assert not out_dir.exists()


def test_plan_json_holds_the_platform_stack_and_one_stack_per_live_endpoint(world):
    ok("endpoint", "delete", "coder", "--yes", "--no-deploy")  # its stack is about to go: not planned
    resources = json.loads(ok("plan", "--env", "dev", "--format", "json").stdout)
    stacks = {r["stack"] for r in resources}
    assert stacks == {"dev", "dev-chat-bot", "dev-tiny"}
    namespaces = {r["stack"]: r["inputs"]["metadata"]["name"] for r in resources
                  if r["type"] == "kubernetes:core/v1:Namespace"}
    # The platform stack's one namespace is the metering collector's.
    assert namespaces == {"dev": "privend-metering", "dev-chat-bot": "ep-chat-bot", "dev-tiny": "ep-tiny"}


def test_plan_of_one_endpoint_holds_only_that_endpoints_stack(world):
    resources = json.loads(ok("plan", "--env", "dev", "--endpoint", "tiny", "--format", "json").stdout)
    assert resources
    assert {r["stack"] for r in resources} == {"dev-tiny"}
    assert_one_line_error(run("plan", "--env", "dev", "--endpoint", "nope"), 2, "endpoint 'nope' not found in env dev")
