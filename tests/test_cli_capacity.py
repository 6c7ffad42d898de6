"""`privend capacity ...`, `privend quota check` and the capacity, cost and quota steps of `endpoint create`.

Every test runs against its own registry (conftest's PRIVEND_HOME) and a copy of
the stack files (PRIVEND_STACKS_DIR), with no AWS credentials in reach unless a
test hands the CLI stubbed clients: Service Quotas through botocore's Stubber on
a real client (moto does not implement it for EC2), CloudWatch through moto.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

import privend.quotas
from privend.capacity import Demand, plan_capacity

from privend.errors import PrivendError
from privend.demand import pool_bounds, pools_for
from privend.stackfile import rewrite_pool_bounds
from privend.quotas import AwsClients
from tests.cli_support import assert_one_line_error, load_environment, ok, open_registry, private_stacks, run

ACME, GLOBEX = "111122223333", "444455556666"
MODEL_8B = "meta-llama/Llama-3.1-8B-Instruct"
MODEL_QWEN = "Qwen/Qwen2.5-7B-Instruct"
MODEL_70B = "meta-llama/Llama-3.1-70B-Instruct"
CUSTOM_4GPU = ("--model", "acme-ai/custom-32b", "--gpus-per-replica", "4", "--max-input-tokens", "4096",
               "--max-total-tokens", "8192")
G_ON_DEMAND, P_ON_DEMAND, G_SPOT = "L-DB2E81BA", "L-417A185B", "L-3819A6DF"
NO_CREDENTIALS = ("error: quota check needs AWS credentials and found none "
                  "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)\n")
QUOTA_SKIPPED = "note: EC2 vCPU quota check skipped: no AWS credentials (run `privend quota check` where there are)\n"


def endpoint_names(env: str = "dev") -> list[str]:
    return [e["name"] for e in json.loads(ok("endpoint", "list", "--env", env, "--format", "json").stdout)]


# No AWS credentials anywhere: nothing in these tests may reach a real account.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


@pytest.fixture(autouse=True)
def stacks(monkeypatch, tmp_path) -> Path:
    """A private copy of the stack files: `capacity apply` writes here, never into the repository."""
    return private_stacks(monkeypatch, tmp_path)


@pytest.fixture
def dev_fleet():
    """dev (pool l4: g6.xlarge 1 GPU, g6.12xlarge 4 GPUs; spot; 0..4): two shared endpoints and one dedicated."""
    ok("tenant", "create", "acme", "--aws-account", ACME)
    ok("tenant", "create", "globex", "--aws-account", GLOBEX, "--tier", "dedicated")
    ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:3", "--no-deploy")
    ok("endpoint", "create", "big", "--tenant", "acme", *CUSTOM_4GPU, "--replicas", "1:2", "--no-deploy")
    ok("endpoint", "create", "priv", "--tenant", "globex", "--model", MODEL_QWEN, "--no-deploy")


def set_status(name: str, status: str, env: str = "dev") -> None:
    with open_registry() as registry:
        endpoint = registry.get_endpoint(env, name)
        registry.update_endpoint(env, name, expected_version=endpoint.version, status=status,
                                 deployed_hash=endpoint.spec_hash)


# -- capacity plan --


def test_capacity_plan_json_gives_hand_checked_nodes_and_keeps_dedicated_tenants_apart(dev_fleet):
    data = json.loads(ok("capacity", "plan", "--format", "json").stdout)
    (pool,) = data["pools"]
    assert pool["name"] == "l4"
    assert pool["pool"]["max_size"] == 4
    # Min: big's 4-GPU replica needs a g6.12xlarge; chat's one GPU is cheapest on a g6.xlarge;
    # globex is dedicated, so priv gets a node of its own.
    assert (pool["min"]["node_count"], pool["min"]["nodes_by_type"]) == (3, {"g6.12xlarge": 1, "g6.xlarge": 2})
    # Max: 2 x 4 GPUs on two g6.12xlarge, chat's three 1-GPU replicas on three g6.xlarge
    # (2.41 $/h, against 4.60 for one g6.12xlarge), priv alone again.
    assert (pool["max"]["node_count"], pool["max"]["nodes_by_type"]) == (6, {"g6.12xlarge": 2, "g6.xlarge": 4})
    assert (pool["min"]["gpu_utilisation"], pool["max"]["gpu_utilisation"]) == (1.0, 1.0)
    assert pool["max"]["gap"] == 0.0
    assert pool["max"]["lower_bound"] == 4  # 11 shared GPUs / 4, plus 1 dedicated
    # Six cheap nodes exceed maxSize 4, but four g6.12xlarge hold everything: the pool fits.
    assert pool["fit"] == {"pool": "l4", "max_size": 4, "fits": True, "nodes_needed_cheapest": 6,
                           "nodes_needed_fewest": 4, "largest_type": "g6.12xlarge"}

    endpoints = {e["endpoint"]: e for e in data["endpoints"]}
    assert set(endpoints) == {"big", "chat", "priv"}
    assert [len(endpoints["chat"]["placements"][s]) for s in ("min", "max")] == [1, 3]
    assert len({p["node_index"] for p in endpoints["chat"]["placements"]["max"]}) == 3
    big_at_max = endpoints["big"]["placements"]["max"]
    assert [(p["instance_type"], p["gpu_indices"]) for p in big_at_max] == [("g6.12xlarge", [0, 1, 2, 3])] * 2
    priv_node = endpoints["priv"]["placements"]["max"][0]["node_index"]
    nodes = {n["index"]: n for n in pool["max"]["nodes"]}
    assert nodes[priv_node]["dedicated_tenant"] == "globex"
    assert {s["endpoint"] for s in nodes[priv_node]["gpu_slots"]} == {"priv"}
    assert all(n["dedicated_tenant"] is None for i, n in nodes.items() if i != priv_node)


def test_capacity_plan_json_prices_on_demand_with_spot_on_its_own_and_dedicated_at_peak(dev_fleet):
    data = json.loads(ok("capacity", "plan", "--format", "json").stdout)
    cost = data["cost"]
    assert cost["prices_read_on"] == data["prices_read_on"] == "2026-11-26"
    assert cost["baseline_name"] == "dedicated at peak"
    assert any("spot capacity priced at 60 % of on-demand" in a for a in cost["assumptions"])
    endpoints = {e["endpoint"]: e for e in cost["endpoints"]}
    priv = endpoints["priv"]
    # One g6.xlarge of its own, on-demand: 0.8048 x 730 = 587.504 -> 587.50; on spot x 0.60 = 352.50.
    money = {k: Decimal(priv[k]) for k in ("compute_monthly", "nlb_monthly", "privatelink_monthly")}
    assert money == {"compute_monthly": Decimal("587.50"), "nlb_monthly": Decimal("20.80"),
                     "privatelink_monthly": Decimal("14.60")}  # PrivateLink in dev's 2 AZs
    assert priv["spot"] == {"price_factor": "0.60", "compute_monthly": "352.50", "total_monthly": "387.90"}
    assert (priv["baseline"]["name"], priv["baseline"]["instances"]) == ("dedicated at peak", 1)
    assert Decimal(priv["baseline"]["compute_monthly"]) == Decimal("587.50")
    # chat, 1..3 one-GPU replicas: 1 then 3 g6.xlarge; dedicated at peak 3 x 0.8048 x 730 = 1762.512 -> 1762.51.
    chat = endpoints["chat"]
    assert (chat["compute_monthly"], chat["compute_at_max_monthly"]) == ("587.50", "1762.51")
    assert (chat["baseline"]["instances"], chat["baseline"]["compute_monthly"]) == (3, "1762.51")
    # big, 1..2 four-GPU replicas on g6.12xlarge: 4.6016 x 730 = 3359.168 -> 3359.17, twice at max 6718.34.
    big = endpoints["big"]
    assert (big["compute_monthly"], big["compute_at_max_monthly"]) == ("3359.17", "6718.34")
    assert (big["baseline"]["instance_type"], big["baseline"]["compute_monthly"]) == ("g6.12xlarge", "6718.34")
    # Every GPU holds a replica: no overhead, the pool is what its endpoints are attributed.
    (pool,) = cost["pools"]
    assert pool["platform_overhead"]["monthly"] == pool["unattributed_monthly"] == "0.00"
    assert Decimal(pool["monthly"]) == sum(Decimal(e["compute_monthly"]) for e in cost["endpoints"])
    assert (pool["monthly"], pool["spot_monthly"]) == ("4534.17", "2720.50")
    # Pooled 4534.17 + 3 x 35.40 = 4640.37 (spot 2720.50 + 106.20); dedicated at peak 1797.91 + 6753.74 + 622.90.
    assert (cost["pooled_monthly"], cost["spot_pooled_monthly"]) == ("4640.37", "2826.70")
    assert (cost["pooled_at_max_monthly"], cost["baseline_monthly"]) == ("9174.55", "9174.55")
    assert cost["savings_fraction"] == round(4534.18 / 9174.55, 6)


def test_capacity_plan_table_shows_nodes_fit_cost_and_assumptions(dev_fleet):
    out = ok("capacity", "plan").stdout
    row = next(line for line in out.splitlines() if line.startswith("│ l4 (spot) "))
    assert "│ 0..4 " in row
    assert "3 (1x g6.12xlarge, 2x g6.xlarge)" in row
    assert "6 (2x g6.12xlarge, 4x g6.xlarge)" in row
    assert "100.0 % / 100.0 %" in row
    assert "│ 3 / 4 " in row
    assert "yes, as 4x g6.12xlarge" in row
    chat = next(line for line in out.splitlines() if line.startswith("│ chat "))
    assert "1..3" in chat
    assert chat.count("g6.xlarge GPU 0") == 4  # one replica at min, three at max
    priv_cost = [line for line in out.splitlines() if line.startswith("│ priv ")][1]
    cells = [cell.strip() for cell in priv_cost.strip("│").split("│")]
    assert cells == ["priv", "l4 (spot)", "1..1", "$587.50", "$587.50", "$20.80", "$14.60", "$622.90", "$622.90",
                     "$387.90", "1x g6.xlarge", "$622.90", "$0.00"]
    assert "monthly cost per endpoint, USD, on-demand (prices read 2026-11-26)" in out
    assert ("env dev, on-demand, USD / month: pooled $4,640.37 at min scale, $9,174.55 at max scale (platform "
            "overhead $0.00 at min, $0.00 at max); dedicated at peak (peak taken as replicas MAX) $9,174.55: pooled "
            "saves 49.4 % at min scale, saves 0.0 % at max scale (prices read 2026-11-26)") in out
    assert "on spot (assumed 0.60 x on-demand): pooled $2,826.70 / month at min scale, not in any saving" in out
    assert "monthly cost per pool, USD, on-demand" in out
    assert "`privend capacity simulate --env dev --synthetic SEED`" in out
    assert "spot capacity priced at 60 % of on-demand" in out
    assert "a month is 730 hours" in out


def test_capacity_plan_prod_h100_endpoint_pays_its_gpus_and_the_idle_half_node_is_overhead():
    ok("tenant", "create", "acme", "--aws-account", ACME, "--env", "prod")
    ok("endpoint", "create", "large", "--env", "prod", "--tenant", "acme", "--model", MODEL_70B, "--pool", "h100",
       "--replicas", "1:3", "--no-deploy")
    data = json.loads(ok("capacity", "plan", "--env", "prod", "--format", "json").stdout)
    pools = {p["name"]: p for p in data["pools"]}
    # 4 GPUs per replica on 8-GPU p5.48xlarge: 1 node at min (half used), 12 GPUs -> 2 nodes at max.
    h100 = pools["h100"]
    assert (h100["min"]["node_count"], h100["max"]["node_count"]) == (1, 2)
    assert (h100["min"]["gpu_utilisation"], h100["max"]["gpu_utilisation"]) == (0.5, 0.75)
    assert h100["max"]["lower_bound"] == 2
    assert h100["max"]["gap"] == 0.0
    assert (pools["l40s"]["min"]["node_count"], pools["l40s"]["floor_nodes"]) == (0, 2)
    large = next(e for e in data["cost"]["endpoints"] if e["endpoint"] == "large")
    # It holds 4 of the node's 8 GPUs: 55.04 / 8 x 4 x 730 = 20089.60; 12 GPUs at max, 60268.80.
    # Dedicated at peak: a p5.48xlarge holds two replicas, so MAX 3 needs 2: 2 x 55.04 x 730 = 80358.40.
    assert (large["compute_monthly"], large["compute_at_max_monthly"]) == ("20089.60", "60268.80")
    assert (large["baseline"]["instances"], large["baseline"]["compute_monthly"]) == (2, "80358.40")
    assert Decimal(large["privatelink_monthly"]) == Decimal("21.90")
    costs = {p["pool"]: p for p in data["cost"]["pools"]}
    # The idle half of the node, at min and at max, is the platform's.
    assert costs["h100"]["platform_overhead"]["idle_gpus_monthly"] == "20089.60"
    assert costs["h100"]["at_max"]["platform_overhead"]["idle_gpus_monthly"] == "20089.60"
    # prod's l40s keeps two floor nodes of its first type (2 x g6e.xlarge: 2 x 1.861 x 730 = 2717.06) and
    # warm headroom of two 2-GPU placeholders, which 1-GPU floor nodes cannot hold: one g6e.12xlarge is
    # bought (10.49264 x 730 = 7659.63). No endpoint carries either.
    l40s = costs["l40s"]
    overhead = l40s["platform_overhead"]
    assert (overhead["floor_nodes_monthly"], overhead["warm_headroom_monthly"]) == ("2717.06", "7659.63")
    assert l40s["unattributed_monthly"] == l40s["monthly"] == "10376.69"


def test_capacity_plan_prod_70b_endpoint_does_not_carry_the_pools_floor_nodes():
    ok("tenant", "create", "acme", "--aws-account", ACME, "--env", "prod")
    ok("endpoint", "create", "large", "--env", "prod", "--tenant", "acme", "--model", MODEL_70B, "--pool", "l40s",
       "--replicas", "1:3", "--no-deploy")
    data = json.loads(ok("capacity", "plan", "--env", "prod", "--format", "json").stdout)
    large = next(e for e in data["cost"]["endpoints"] if e["endpoint"] == "large")
    # Its 4-GPU replica fills a g6e.12xlarge: 10.49264 x 730 = 7659.6272 -> 7659.63. The second node
    # minSize 2 keeps (a g6e.xlarge, the pool's first type: 1.861 x 730 = 1358.53) is the platform's, not
    # large's; so is the warm headroom (two 2-GPU placeholders: a g6e.12xlarge, 7659.63). Dedicated at
    # peak: 3 x g6e.12xlarge = 22978.88.
    assert (large["gpus_at_min"], large["instance_types"]) == (4, {"g6e.12xlarge": 1})
    assert (large["compute_monthly"], large["total_monthly"]) == ("7659.63", "7702.33")
    assert (large["baseline"]["instances"], large["baseline"]["total_monthly"]) == (3, "23021.58")
    assert Decimal(large["total_monthly"]) < Decimal(large["baseline"]["total_monthly"])
    l40s = next(p for p in data["cost"]["pools"] if p["pool"] == "l40s")
    assert (l40s["floor_nodes"], l40s["platform_overhead"]["floor_nodes_monthly"]) == (1, "1358.53")
    assert l40s["platform_overhead"]["warm_headroom_monthly"] == "7659.63"
    assert l40s["monthly"] == "16677.79"  # 7659.63 attributed + 1358.53 floor + 7659.63 headroom


def test_capacity_plan_buys_the_warm_headroom_of_the_stack_file_as_platform_overhead(stacks):
    path = stacks / "Pulumi.dev.yaml"
    text = path.read_text()
    path.write_text(text.replace("      instanceTypes:", "      warmHeadroomGpus: 3\n      instanceTypes:", 1))
    ok("tenant", "create", "acme", "--aws-account", ACME)
    ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--no-deploy")
    data = json.loads(ok("capacity", "plan", "--format", "json").stdout)
    (pool,) = data["cost"]["pools"]
    # chat fills a g6.xlarge, so no GPU is free: 3 GPUs of headroom are bought, 3 x g6.xlarge (2.4144/h)
    # being cheaper than one g6.12xlarge (4.6016/h): 2.4144 x 730 = 1762.512 -> 1762.51, the pool's, not chat's.
    assert (pool["warm_headroom_gpus"], pool["headroom_nodes"]) == (3, {"g6.xlarge": 3})
    assert pool["platform_overhead"]["warm_headroom_monthly"] == pool["unattributed_monthly"] == "1762.51"
    assert data["cost"]["endpoints"][0]["compute_monthly"] == "587.50"
    assert pool["monthly"] == "2350.01"  # 587.50 + 1762.51
    row = next(line for line in ok("capacity", "plan").stdout.splitlines() if line.startswith("│ l4 ") and "$" in line)
    assert "3 (adds 3x g6.xlarge)" in row and "$1,762.51" in row


def test_capacity_plan_skips_endpoints_being_deleted(dev_fleet):
    ok("endpoint", "delete", "big", "--yes", "--no-deploy")
    data = json.loads(ok("capacity", "plan", "--format", "json").stdout)
    assert [d["endpoint"] for d in data["endpoints"]] == ["chat", "priv"]
    assert data["pools"][0]["max"]["nodes_by_type"] == {"g6.xlarge": 4}


def test_capacity_plan_of_an_unknown_env_is_one_line():
    assert_one_line_error(run("capacity", "plan", "--env", "qa"), 2, "environment 'qa' has no stack file")


# -- capacity apply --


def test_capacity_apply_shows_the_diff_and_answering_no_changes_nothing(dev_fleet, stacks):
    before = (stacks / "Pulumi.dev.yaml").read_bytes()
    result = run("capacity", "apply", input="n\n")
    assert result.exit_code == 1  # click's abort
    assert ("       capacityType: spot\n"
            "-      minSize: 0\n-      maxSize: 4\n+      minSize: 3\n+      maxSize: 6\n"
            "       diskSizeGiB: 200\n") in result.stdout
    assert "Write these pool bounds and headroom to Pulumi.dev.yaml? [y/N]" in result.stdout
    assert (stacks / "Pulumi.dev.yaml").read_bytes() == before


def test_capacity_apply_yes_rewrites_only_the_bounds_and_keeps_comments(dev_fleet, stacks):
    path = stacks / "Pulumi.dev.yaml"
    before = path.read_text()
    result = ok("capacity", "apply", "--yes")
    assert "pool l4: minSize 0 -> 3, maxSize 4 -> 6" in result.stdout
    assert "wrote Pulumi.dev.yaml" in result.stdout
    after = path.read_text()
    expected = before.replace("      minSize: 0\n      maxSize: 4\n", "      minSize: 3\n      maxSize: 6\n")
    assert expected != before
    assert after == expected
    assert after.startswith("# dev: one small L4 pool on spot capacity")
    pool = load_environment("dev").pool("l4")
    assert (pool.min_size, pool.max_size) == (3, 6)
    assert not list(stacks.glob(".Pulumi.dev.yaml.*"))  # no temporary file left behind
    # Applied once, the bounds follow the plan.
    again = ok("capacity", "apply")
    assert "nothing to change in Pulumi.dev.yaml" in again.stdout
    assert "---" not in again.stdout
    assert path.read_text() == after


def test_capacity_apply_never_lowers_min_below_what_running_endpoints_need_at_max(stacks):
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      minSize: 0\n", "      minSize: 2\n"))
    ok("tenant", "create", "acme", "--aws-account", ACME)
    ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:3", "--no-deploy")

    # Pending, it runs nothing yet: the plan's 1 node at min and 3 at max go in.
    result = run("capacity", "apply", input="n\n")
    assert "pool l4: minSize 2 -> 1, maxSize 4 -> 3" in result.stdout

    # Ready, its three replicas may need 3 nodes at any time: minSize stays at 2.
    set_status("chat", "ready")
    result = ok("capacity", "apply", "--yes")
    assert "pool l4: minSize 2 -> 2, maxSize 4 -> 3 (plan: 1 nodes at min, 3 at max; running endpoints need 3" \
        in result.stdout
    pool = load_environment("dev").pool("l4")
    assert (pool.min_size, pool.max_size) == (2, 3)


def test_pool_bounds_keep_max_at_what_running_endpoints_need_when_the_plan_asks_less():
    cfg = load_environment("dev")  # l4: 0..4
    pools = pools_for(cfg)
    empty = plan_capacity([], pools)
    running = plan_capacity([Demand("chat", "acme", "l4", 1, 1, 3)], pools)

    (bounds,) = pool_bounds(cfg, empty, running)

    assert (bounds.planned_min, bounds.planned_max, bounds.running_need) == (0, 0, 3)
    assert (bounds.new_min, bounds.new_max) == (0, 3)  # not 1, the floor of an empty plan
    (unguarded,) = pool_bounds(cfg, empty)
    assert (unguarded.new_min, unguarded.new_max) == (0, 1)  # a node group needs maxSize >= 1


def test_capacity_apply_clamps_desired_size_and_keeps_its_comment(stacks):
    path = stacks / "Pulumi.prod.yaml"
    text = path.read_text().replace("      minSize: 1\n      maxSize: 4\n",
                                    "      minSize: 1\n      maxSize: 4\n      desiredSize: 3   # warm for launch\n")
    path.write_text(text)
    assert load_environment("prod").pool("h100").desired_size == 3

    ok("capacity", "apply", "--env", "prod", "--yes")

    after = path.read_text()
    assert "      minSize: 0\n      maxSize: 1\n      desiredSize: 1   # warm for launch\n" in after
    assert "      warmHeadroomGpus: 0\n" in after  # no traffic in the ledger: no scale-up to keep warm
    assert after.startswith("# prod: three AZs with a NAT gateway each")
    pool = load_environment("prod").pool("h100")
    assert (pool.min_size, pool.max_size, pool.desired_size) == (0, 1, 1)


def test_rewrite_handles_compact_lists_and_bare_dashes_and_changes_only_the_values():
    text = (
        "config:\n"
        "  privend:region: us-east-1\n"
        "  privend:gpuPools:\n"
        "  - name: a   # first\n"
        "    instanceTypes: [g6.xlarge]\n"
        "    minSize: 0\n"
        "    maxSize: 4 # cap\n"
        "    labels:\n"
        "      minSize: untouched\n"
        "  -\n"
        "    name: \"b\"\n"
        "    maxSize: 2\r\n"
        "    minSize: 1\n"
        "  privend:azCount: 2\n"
    )
    new = rewrite_pool_bounds(text, {"a": {"minSize": 1, "maxSize": 5}, "b": {"minSize": 0, "maxSize": 3}})
    assert new == (
        text.replace("    minSize: 0\n    maxSize: 4 # cap\n", "    minSize: 1\n    maxSize: 5 # cap\n")
        .replace("    maxSize: 2\r\n    minSize: 1\n", "    maxSize: 3\r\n    minSize: 0\n")
    )


def test_rewrite_refuses_a_flow_style_pool_list_with_one_line():
    text = "config:\n  privend:gpuPools: [{name: a, instanceTypes: [g6.xlarge], minSize: 0, maxSize: 1}]\n"
    with pytest.raises(PrivendError) as error:
        rewrite_pool_bounds(text, {"a": {"minSize": 1}}, source="Pulumi.x.yaml")
    assert str(error.value).startswith("Pulumi.x.yaml: privend:gpuPools is not a block list")


# -- quota check --


@pytest.fixture
def aws(no_aws_credentials, monkeypatch):
    """The CLI's AWS clients: a real Service Quotas client under a Stubber, CloudWatch in moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        service_quotas = boto3.client("service-quotas", region_name="us-east-1")
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        clients = AwsClients(service_quotas, cloudwatch)
        regions = []
        monkeypatch.setattr(privend.quotas, "aws_clients", lambda cfg: regions.append(cfg.region) or clients)
        with Stubber(service_quotas) as stubber:
            yield clients, stubber, regions
            stubber.assert_no_pending_responses()


def applied(stubber, code: str, value: float) -> None:
    stubber.add_response("get_service_quota",
                         {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": code, "Value": value}},
                         {"ServiceCode": "ec2", "QuotaCode": code})


def usage(cloudwatch, usage_class: str, vcpus: float) -> None:
    cloudwatch.put_metric_data(Namespace="AWS/Usage", MetricData=[{
        "MetricName": "ResourceCount",
        "Dimensions": [{"Name": "Service", "Value": "EC2"}, {"Name": "Type", "Value": "Resource"},
                       {"Name": "Resource", "Value": "vCPU"}, {"Name": "Class", "Value": usage_class}],
        "Value": vcpus, "Timestamp": datetime.now(timezone.utc) - timedelta(minutes=5),
    }])


def test_quota_check_offline_says_in_one_line_that_it_needs_credentials():
    result = run("quota", "check", "--env", "prod")
    assert result.exit_code == 1
    assert result.stderr == NO_CREDENTIALS
    assert result.stdout == ""


def test_quota_check_shows_a_quota_of_zero_and_its_shortfall(aws):
    _, stubber, regions = aws
    applied(stubber, G_SPOT, 0.0)
    result = run("quota", "check")
    # dev's l4 pool, on spot: a node group per GPU count, each may reach maxSize 4: 4 g6.xlarge (4 vCPUs)
    # and 4 g6.12xlarge (48 vCPUs), 208 vCPUs.
    assert result.exit_code == 1
    assert regions == ["us-east-1"]
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"│ {G_SPOT} "))
    assert "│ 208 " in row
    assert "0 (applied)" in row
    assert "quota-zero" in row
    assert "pool l4 4x g6.xlarge (spot) = 16 vCPUs on L-3819A6DF" in result.stdout
    assert "pool l4 4x g6.12xlarge (spot) = 192 vCPUs on L-3819A6DF" in result.stdout
    assert "quota is 0, short by 208 vCPUs" in result.stdout
    assert result.stderr == ("error: 1 EC2 vCPU quota(s) too low for env dev at maxSize: L-3819A6DF short by 208; "
                             "rerun with --request-increase to ask for it\n")


def test_quota_check_prod_json_counts_each_pool_on_its_own_quota_and_passes_when_enough(aws):
    clients, stubber, _ = aws
    usage(clients.cloudwatch, "G/OnDemand", 96)
    applied(stubber, P_ON_DEMAND, 768.0)  # quota codes are checked in code order
    applied(stubber, G_ON_DEMAND, 3024.0)
    data = json.loads(ok("quota", "check", "--env", "prod", "--format", "json").stdout)
    assert data["ok"] is True
    assert data["requests"] == []
    verdicts = {v["quota_code"]: v for v in data["verdicts"]}
    # l40s, a node group per GPU count, each up to maxSize 12: 12 x g6e.xlarge (4 vCPUs), 12 x g6e.12xlarge
    # (48) and 12 x g6e.48xlarge (192); h100: 4 x p5.48xlarge (192 vCPUs). 2,928 + 96 in use = the quota.
    assert (verdicts[G_ON_DEMAND]["vcpus_needed"], verdicts[G_ON_DEMAND]["usage"]) == (2928, 96)
    assert verdicts[P_ON_DEMAND]["vcpus_needed"] == 768
    assert {v["status"] for v in verdicts.values()} == {"ok"}
    assert [(b["pool"], b["instance_type"], b["vcpus"]) for b in data["basis"]] == [
        ("l40s", "g6e.xlarge", 48), ("l40s", "g6e.12xlarge", 576), ("l40s", "g6e.48xlarge", 2304),
        ("h100", "p5.48xlarge", 768)]


def test_quota_check_reports_usage_that_makes_a_quota_fall_short(aws):
    clients, stubber, _ = aws
    usage(clients.cloudwatch, "G/OnDemand", 200)
    applied(stubber, P_ON_DEMAND, 768.0)
    applied(stubber, G_ON_DEMAND, 3024.0)
    result = run("quota", "check", "--env", "prod", "--format", "json")
    assert result.exit_code == 1
    verdicts = {v["quota_code"]: v for v in json.loads(result.stdout)["verdicts"]}
    assert (verdicts[G_ON_DEMAND]["status"], verdicts[G_ON_DEMAND]["shortfall"]) == ("insufficient", 104)
    assert verdicts[P_ON_DEMAND]["status"] == "ok"


def test_quota_check_request_increase_files_the_shortfall_and_prints_the_request(aws):
    _, stubber, _ = aws
    applied(stubber, G_SPOT, 0.0)
    stubber.add_response("list_requested_service_quota_change_history_by_quota", {"RequestedQuotas": []},
                         {"ServiceCode": "ec2", "QuotaCode": G_SPOT})
    stubber.add_response("request_service_quota_increase",
                         {"RequestedQuota": {"Id": "req-7f3a", "QuotaCode": G_SPOT, "DesiredValue": 208.0,
                                             "Status": "PENDING"}},
                         {"ServiceCode": "ec2", "QuotaCode": G_SPOT, "DesiredValue": 208.0})
    result = run("quota", "check", "--request-increase")
    assert result.exit_code == 1  # still short until AWS grants it
    assert "increase request req-7f3a for L-3819A6DF to 208 vCPUs: PENDING (filed)" in result.stdout
    assert result.stderr.endswith("L-3819A6DF short by 208; increase requested\n")


def test_quota_check_request_increase_does_not_file_twice_while_one_is_open(aws):
    _, stubber, _ = aws
    applied(stubber, G_SPOT, 0.0)
    stubber.add_response("list_requested_service_quota_change_history_by_quota",
                         {"RequestedQuotas": [{"Id": "req-open", "QuotaCode": G_SPOT, "ServiceCode": "ec2",
                                               "DesiredValue": 192.0, "Status": "CASE_OPENED"}]},
                         {"ServiceCode": "ec2", "QuotaCode": G_SPOT})
    result = run("quota", "check", "--request-increase", "--format", "json")
    assert result.exit_code == 1  # still short; the open request is reported, not filed again
    data = json.loads(result.stdout)
    assert data["requests"] == [{"quota_code": G_SPOT, "desired_value": 192, "request_id": "req-open",
                                 "status": "CASE_OPENED", "filed": False}]


# -- endpoint create: capacity, cost, quota --


def test_endpoint_create_prints_pooled_at_min_and_max_next_to_dedicated_at_peak_all_on_demand():
    ok("tenant", "create", "acme", "--aws-account", ACME)
    result = ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:3",
                "--no-deploy")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("created endpoint 'chat'")
    # One g6.xlarge at min: 0.8048 x 730 = 587.504 -> 587.50; three at max: 1762.512 -> 1762.51.
    # NLB (0.0225 + 0.006) x 730 = 20.80; PrivateLink 0.01 x 2 AZs x 730 = 14.60.
    # Dedicated at peak: 3 on-demand g6.xlarge, 1762.51. Spot, on its own line: 587.50 x 0.60 = 352.50.
    assert lines[1:7] == [
        "monthly cost estimate, USD, on-demand (prices read 2026-11-26; replicas 1..3, 1 GPU(s) each):",
        "  pooled at min scale  $622.90 = compute $587.50 (replicas at min: 1 on g6.xlarge) + NLB $20.80 "
        "+ PrivateLink $14.60",
        "  pooled at max scale  $1,797.91 = compute $1,762.51 + the same network",
        "  dedicated at peak    $1,797.91 = 3x g6.xlarge $1,762.51 (peak taken as replicas MAX 3, always on) "
        "+ the same network",
        "  on spot (assumed 0.60 x on-demand): $387.90 at min scale",
        "  (idle GPUs of shared nodes, floor nodes and warm headroom are the platform's overhead, not in these "
        "figures: `privend capacity plan`; traffic-driven figures: `privend capacity simulate`)",
    ]
    assert result.stderr == QUOTA_SKIPPED


def test_endpoint_create_json_cost_carries_max_scale_spot_and_dedicated_at_peak():
    ok("tenant", "create", "acme", "--aws-account", ACME)
    cost = json.loads(ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:3",
                         "--no-deploy", "--format", "json").stdout)["cost"]
    assert cost == {
        "prices_read_on": "2026-11-26", "pooled_monthly": "622.90", "compute_monthly": "587.50",
        "nlb_monthly": "20.80", "privatelink_monthly": "14.60", "own_nodes_idle_monthly": "0.00",
        "pooled_at_max_monthly": "1797.91", "compute_at_max_monthly": "1762.51", "spot_pooled_monthly": "387.90",
        "dedicated_monthly": "1797.91",
        "dedicated": {"name": "dedicated at peak", "instance_type": "g6.xlarge", "instances": 3,
                      "peak_replicas": 3, "compute_monthly": "1762.51"},
    }


def test_endpoint_create_of_a_dedicated_tenant_includes_the_idle_gpus_of_its_own_node():
    ok("tenant", "create", "globex", "--aws-account", GLOBEX, "--tier", "dedicated")
    ok("endpoint", "create", "big", "--tenant", "globex", *CUSTOM_4GPU, "--no-deploy")
    result = ok("endpoint", "create", "two", "--tenant", "globex", "--model", MODEL_8B, "--gpus-per-replica", "2",
                "--no-deploy")
    # big fills one of globex's g6.12xlarge; two's 2-GPU replica gets a second one (no 2-GPU type exists)
    # and leaves 2 GPUs idle (2 x 4.6016 / 4 = 2.3008/h). They are globex's, shared by its endpoints pro rata
    # to GPUs: two holds 2 of globex's 6, so 2.3008 x 2/6 x 730 = 559.86 of idle on top of its own
    # 2.3008 x 730 = 1679.58: 3.067733.. x 730 = 2239.445.. -> 2239.45.
    assert ("  pooled at min scale  $2,274.85 = compute $2,239.45 (replicas at min: 1 on g6.12xlarge; "
            "$559.86 of it for idle GPUs of the tenant's own nodes) + NLB $20.80 + PrivateLink $14.60") in result.stdout


def test_endpoint_create_is_refused_with_the_numbers_when_the_pool_max_cannot_hold_it(dev_fleet):
    before = endpoint_names()
    result = run("endpoint", "create", "huge", "--tenant", "acme", "--model", MODEL_8B, "--replicas", "1:6",
                 "--no-deploy")
    # 8 + 3 + 6 = 17 shared GPUs need 5 g6.12xlarge, plus priv's dedicated node: 6 > maxSize 4.
    assert_one_line_error(
        result, 2,
        "endpoint 'huge' does not fit pool 'l4': at max scale (1 GPU(s) x 6 replicas for 'huge', 18 GPUs in the "
        "pool in all) the pool would need 6 nodes even of its largest type g6.12xlarge (4 GPUs each), 4 without "
        "it; pool 'l4' allows at most 4 (maxSize in ")
    assert "lower the replicas MAX, use another pool, or raise maxSize" in result.stderr
    assert result.stdout == ""
    assert endpoint_names() == before


def test_endpoint_create_that_fits_only_on_the_largest_nodes_is_accepted(dev_fleet):
    # 8 + 3 + 1 = 12 shared GPUs: three g6.12xlarge, plus priv's node: 4 = maxSize.
    ok("endpoint", "create", "extra", "--tenant", "acme", "--model", MODEL_8B, "--no-deploy")
    assert "extra" in endpoint_names()


def test_endpoint_create_strict_quota_without_credentials_refuses_and_records_nothing():
    ok("tenant", "create", "acme", "--aws-account", ACME)
    result = run("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--no-deploy",
                 "--strict-quota")
    assert_one_line_error(result, 1, "--strict-quota: cannot check EC2 vCPU quotas for endpoint 'chat': "
                                     "no AWS credentials found")
    assert endpoint_names() == []


def test_endpoint_create_warns_in_one_line_when_it_would_exceed_a_quota(aws):
    _, stubber, _ = aws
    ok("tenant", "create", "acme", "--aws-account", ACME)
    applied(stubber, G_SPOT, 0.0)
    result = ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--no-deploy")
    # At max scale the fleet is one spot g6.xlarge: 4 vCPUs against a quota of 0.
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("warning: endpoint 'chat' would exceed an EC2 vCPU quota: L-3819A6DF ")
    assert "need 4 vCPUs at max scale; quota 0 (applied), in use 0: quota is 0, short by 4 vCPUs" in result.stderr
    assert endpoint_names() == ["chat"]


def test_endpoint_create_strict_quota_refuses_a_shortfall_and_records_nothing(aws):
    _, stubber, _ = aws
    ok("tenant", "create", "acme", "--aws-account", ACME)
    applied(stubber, G_SPOT, 0.0)
    result = run("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--no-deploy",
                 "--strict-quota")
    assert_one_line_error(result, 1, "endpoint 'chat' would exceed an EC2 vCPU quota: L-3819A6DF")
    assert "nothing recorded" in result.stderr
    assert endpoint_names() == []


def test_endpoint_create_with_enough_quota_says_nothing_about_quotas(aws):
    clients, stubber, _ = aws
    ok("tenant", "create", "acme", "--aws-account", ACME)
    usage(clients.cloudwatch, "G/Spot", 8)
    applied(stubber, G_SPOT, 64.0)
    result = ok("endpoint", "create", "chat", "--tenant", "acme", "--model", MODEL_8B, "--no-deploy",
                "--strict-quota")
    assert result.stderr == ""
    assert endpoint_names() == ["chat"]


# -- capacity apply: warm headroom


def test_capacity_apply_sizes_warm_headroom_on_traffic_and_simulate_confirms_the_target(stacks):
    ok("tenant", "create", "acme", "--aws-account", ACME)
    for name in ("chat", "code", "docs"):
        ok("endpoint", "create", name, "--tenant", "acme", "--model", MODEL_8B, "--replicas", "0:4", "--no-deploy")
    path = stacks / "Pulumi.dev.yaml"
    assert "warmHeadroom" not in path.read_text()

    out = ok("capacity", "apply", "--synthetic", "7", "--target", "99.9", "--yes").stdout

    pool = load_environment("dev").pool("l4")
    assert pool.warm_headroom_gpus > 0 and pool.warm_headroom_pod_gpus == 1  # 1-GPU replicas: the default
    assert f"pool l4: warmHeadroomGpus {pool.warm_headroom_gpus} in {pool.warm_headroom_gpus} placeholders of 1 GPU" \
        in out
    assert "meets the 99.9 % target" in out and "a month" in out
    # maxSize: the plan's 12 single-GPU nodes at max scale, and room for the placeholders on 4-GPU nodes.
    assert pool.max_size == 12 + -(-pool.warm_headroom_gpus // 4)
    # The key went in after maxSize (warmHeadroomPodGpus keeps its default, so it is not written).
    assert f"      maxSize: {pool.max_size}\n      warmHeadroomGpus: {pool.warm_headroom_gpus}\n      diskSizeGiB" \
        in path.read_text()
    # Replaying the same traffic (with the bounds now written) meets the target; one GPU fewer does not.
    again = json.loads(ok("capacity", "simulate", "--synthetic", "7", "--format", "json").stdout)
    assert float(again["pools"][0]["scale_ups_without_waiting_for_a_node_percent"]) >= 99.9
    path.write_text(path.read_text().replace(f"warmHeadroomGpus: {pool.warm_headroom_gpus}",
                                             f"warmHeadroomGpus: {pool.warm_headroom_gpus - 1}"))
    fewer = json.loads(ok("capacity", "simulate", "--synthetic", "7", "--format", "json").stdout)
    assert float(fewer["pools"][0]["scale_ups_without_waiting_for_a_node_percent"]) < 99.9
    # Run again on the same traffic: only the headroom changed back, nothing else.
    ok("capacity", "apply", "--synthetic", "7", "--target", "99.9", "--yes")
    assert load_environment("dev").pool("l4").warm_headroom_gpus == pool.warm_headroom_gpus


def test_capacity_apply_without_traffic_keeps_no_headroom_and_names_unsimulated_endpoints(dev_fleet, stacks):
    # The default source is last period's usage ledger: empty here, so no scale-up needs a warm GPU.
    out = ok("capacity", "apply", "--yes").stdout
    assert "warm headroom sized on usage ledger, period" in out
    assert "not simulated (model outside the catalog, throughput unknown): big" in out
    assert "warmHeadroomGpus 0 in 0 placeholders" in out
    assert "warmHeadroom" not in (stacks / "Pulumi.dev.yaml").read_text()


def test_capacity_apply_takes_one_traffic_source_at_most():
    result = run("capacity", "apply", "--synthetic", "1", "--period", "2026-10")
    assert result.exit_code == 2
    assert "give at most one of --traffic, --period, --synthetic (got --period, --synthetic)" in result.output


def test_rewrite_adds_missing_headroom_keys_after_max_size_and_refuses_other_missing_keys():
    text = ("config:\n  privend:gpuPools:\n  - name: a\n    instanceTypes: [g6.xlarge]\n    minSize: 0\n"
            "    maxSize: 4 # cap\n    labels: {x: y}\n")
    out = rewrite_pool_bounds(text, {"a": {"warmHeadroomGpus": 3, "warmHeadroomPodGpus": 1}})
    assert out == ("config:\n  privend:gpuPools:\n  - name: a\n    instanceTypes: [g6.xlarge]\n    minSize: 0\n"
                   "    maxSize: 4 # cap\n    warmHeadroomGpus: 3\n    warmHeadroomPodGpus: 1\n    labels: {x: y}\n")
    again = rewrite_pool_bounds(out, {"a": {"warmHeadroomGpus": 5}})
    assert "    warmHeadroomGpus: 5\n    warmHeadroomPodGpus: 1\n" in again
    with pytest.raises(PrivendError, match="pool 'a' has no desiredSize line to rewrite"):
        rewrite_pool_bounds(text, {"a": {"desiredSize": 1}})
