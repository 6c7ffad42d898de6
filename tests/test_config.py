"""Environment config: the real stack files load, and every bad value gets its own one-line error."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from privend.cli import main
from privend import config
from privend.config import stack_file
from tests.cli_support import current_settings
from privend.errors import InputError

BASE = yaml.safe_load(stack_file("dev").read_text())


def _write(tmp_path, monkeypatch, mutate) -> None:
    document = copy.deepcopy(BASE)
    mutate(document["config"])
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    (stacks / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(stacks))



def load_environment(env: str):
    """The environment as the CLI loads it, from the stack files the test's settings name."""
    return config.load_environment(env, current_settings().stacks_dir)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_shipped_environments_are_valid(env):
    cfg = load_environment(env)
    assert cfg.environment == env
    assert cfg.gpu_pools


def test_prod_spans_three_azs_with_an_l40s_and_an_h100_pool():
    cfg = load_environment("prod")
    assert cfg.az_count == 3
    assert cfg.nat_gateways == "per-az"
    assert {p.name: p.gpu_model for p in cfg.gpu_pools} == {"l40s": "L40S", "h100": "H100"}


def test_dev_has_one_l4_pool_on_spot():
    (pool,) = load_environment("dev").gpu_pools
    assert (pool.gpu_model, pool.capacity_type) == ("L4", "spot")


def _pool(cfg, **changes):
    cfg["privend:gpuPools"][0].update(changes)


INVALID = [
    ("region", lambda c: c.update({"privend:region": "mars-1"}),
     "privend:region: 'mars-1' is not an AWS region name (like us-east-1)"),
    ("az count", lambda c: c.update({"privend:azCount": 1}),
     "privend:azCount: Input should be greater than or equal to 2"),
    ("vpc cidr", lambda c: c.update({"privend:vpcCidr": "10.0.0.0/24"}),
     "privend:vpcCidr: VPC CIDR must be a /16 to /19, got /24"),
    ("public vpc cidr", lambda c: c.update({"privend:vpcCidr": "8.8.0.0/16"}),
     "privend:vpcCidr: '8.8.0.0/16' is not a private (RFC 1918) range"),
    ("bad cidr", lambda c: c.update({"privend:vpcCidr": "10.0.0.1/16"}),
     "privend:vpcCidr: '10.0.0.1/16' is not a valid IPv4 network (10.0.0.1/16 has host bits set)"),
    ("k8s version", lambda c: c.update({"privend:kubernetesVersion": "1.19"}),
     "privend:kubernetesVersion: '1.19' is not a supported EKS Kubernetes version (1.28 to 1.39)"),
    ("public api without cidrs", lambda c: c.update({"privend:apiAccess": {"mode": "public"}}),
     "privend:apiAccess: public API access must be restricted to publicCidrs"),
    ("public api to the world", lambda c: c.update({"privend:apiAccess": {"mode": "public", "publicCidrs": ["0.0.0.0/0"]}}),
     "privend:apiAccess.publicCidrs: '0.0.0.0/0' opens the API server to the whole internet"),
    ("unknown key", lambda c: c.update({"privend:gpuPool": []}),
     "privend:gpuPool: unknown key"),
    ("no pools", lambda c: c.update({"privend:gpuPools": []}),
     "privend:gpuPools: List should have at least 1 item after validation, not 0"),
    ("pool name", lambda c: _pool(c, name="L4_Pool"),
     "privend:gpuPools[0].name: pool name 'L4_Pool' must be lowercase letters, digits and '-', starting with a letter"),
    ("unknown instance", lambda c: _pool(c, instanceTypes=["g9.xlarge"]),
     "privend:gpuPools[0].instanceTypes: g9.xlarge not in the GPU catalog (privend/catalog/gpu_instances.yaml)"),
    ("mixed gpu models", lambda c: _pool(c, instanceTypes=["g6.xlarge", "g5.xlarge"]),
     "privend:gpuPools[0].instanceTypes: a pool must use one GPU model, got A10G, L4"),
    ("capacity type", lambda c: _pool(c, capacityType="reserved"),
     "privend:gpuPools[0].capacityType: Input should be 'on-demand' or 'spot'"),
    ("min above max", lambda c: _pool(c, minSize=5, maxSize=4),
     "privend:gpuPools[0]: minSize (5) is larger than maxSize (4)"),
    ("desired out of range", lambda c: _pool(c, minSize=0, maxSize=2, desiredSize=3),
     "privend:gpuPools[0]: desiredSize (3) must be between minSize and maxSize"),
    ("headroom beyond the pool", lambda c: _pool(c, warmHeadroomGpus=17),
     "privend:gpuPools[0]: warmHeadroomGpus (17) is more than the pool holds at maxSize (4 nodes of at most 4 GPUs: 16)"),
    ("negative min", lambda c: _pool(c, minSize=-1),
     "privend:gpuPools[0].minSize: Input should be greater than or equal to 0"),
    ("tiny disk", lambda c: _pool(c, diskSizeGiB=10),
     "privend:gpuPools[0].diskSizeGiB: Input should be greater than or equal to 50"),
    ("reserved label", lambda c: _pool(c, labels={"privend.io/pool": "x"}),
     "privend:gpuPools[0].labels: label 'privend.io/pool' is reserved: the platform sets it"),
    ("duplicate pool", lambda c: c["privend:gpuPools"].append(dict(c["privend:gpuPools"][0])),
     "privend:gpuPools: pool names must be unique, l4 repeated"),
    ("reserved tag", lambda c: c.update({"privend:costTags": {"environment": "x"}}),
     "privend:costTags: tag 'environment' is reserved: the platform sets it"),
    ("aws tag", lambda c: c.update({"privend:costTags": {"aws:owner": "x"}}),
     "privend:costTags: 'aws:owner' is not a valid AWS tag key"),
]


@pytest.mark.parametrize("mutate,message", [(m, msg) for _, m, msg in INVALID], ids=[i for i, _, _ in INVALID])
def test_each_invalid_value_gets_its_own_one_line_error(tmp_path, monkeypatch, mutate, message):
    _write(tmp_path, monkeypatch, mutate)
    with pytest.raises(InputError) as exc:
        load_environment("dev")
    assert str(exc.value) == f"{tmp_path / 'stacks' / 'Pulumi.dev.yaml'}: {message}"


def test_plan_with_a_broken_value_exits_2_with_one_line_and_no_traceback(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, lambda c: _pool(c, minSize=9, maxSize=4))
    result = CliRunner().invoke(main, ["plan", "--env", "dev"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("Pulumi.dev.yaml: privend:gpuPools[0]: minSize (9) is larger than maxSize (4)")
    assert "Traceback" not in result.output


def test_secret_token_is_accepted_when_stored_as_a_pulumi_secret(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, lambda c: c.update({"privend:hfToken": {"secure": "v1:abc"}}))
    assert load_environment("dev").environment == "dev"


def test_invalid_yaml_names_the_file_and_line(tmp_path, monkeypatch):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.dev.yaml").write_text("config:\n  privend:region: [unclosed\n")
    monkeypatch.setenv("PRIVEND_STACKS_DIR", str(stacks))
    with pytest.raises(InputError, match=r"Pulumi.dev.yaml: line 3 is not valid YAML"):
        load_environment("dev")


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(InputError, match=r"environment 'qa' has no stack file .*\(environments: dev, prod, staging\)"):
        load_environment("qa")


def test_environment_name_must_be_a_dns_label():
    with pytest.raises(InputError, match="environment name 'Prod!' must be lowercase"):
        load_environment("Prod!")


def test_plaintext_token_is_refused_on_the_deploy_path_with_the_fix(tmp_path, monkeypatch):
    from privend.config import parse_environment

    raw = {"region": "us-east-1", "gpuPools": [{"name": "l4", "instanceTypes": ["g6.xlarge"], "minSize": 0, "maxSize": 1}],
           "hfToken": "hf_abcdefghijklmnopqrstuvwxyz0123456789"}
    with pytest.raises(InputError) as exc:
        parse_environment(raw, "dev", "stacks/Pulumi.dev.yaml", strict=True)
    assert str(exc.value) == ("stacks/Pulumi.dev.yaml: privend:hfToken: the Hugging Face token is stored in plain text; "
                              "set it with `pulumi config set --secret privend:hfToken`")
    # Offline the file still loads: the guardrail reports it instead (exit code 3, see test_policies).
    assert parse_environment(raw, "dev", "stacks/Pulumi.dev.yaml").environment == "dev"
