"""`privend plan`: readable tables, deterministic JSON, no secret values."""

from __future__ import annotations

import json

from click.testing import CliRunner

from privend.cli import main


def _plan(*args: str):
    result = CliRunner().invoke(main, ["plan", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_plan_json_is_byte_identical_across_runs():
    assert _plan("--env", "dev", "--format", "json") == _plan("--env", "dev", "--format", "json")


def test_prod_plan_lists_vpc_cluster_both_gpu_node_groups_releases_and_table():
    resources = json.loads(_plan("--env", "prod", "--format", "json"))
    assert all(set(r) == {"stack", "type", "name", "urn", "parent", "inputs"} for r in resources)
    assert {r["stack"] for r in resources} == {"prod"}
    by_type: dict[str, list] = {}
    for r in resources:
        by_type.setdefault(r["type"], []).append(r)
    assert len(by_type["aws:ec2/vpc:Vpc"]) == 1
    assert len(by_type["aws:eks/cluster:Cluster"]) == 1
    gpu_groups = {r["name"]: r["inputs"]["taints"] for r in by_type["aws:eks/nodeGroup:NodeGroup"] if "taints" in r["inputs"]}
    # l40s mixes 1-, 4- and 8-GPU types: a node group for each count.
    assert set(gpu_groups) == {"gpu-l40s-ng", "gpu-l40s-4gpu-ng", "gpu-l40s-8gpu-ng", "gpu-h100-ng"}
    assert all(t == [{"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "present"}] for t in gpu_groups.values())
    assert {r["inputs"]["chart"] for r in by_type["kubernetes:helm.sh/v3:Release"]} == {
        "nvidia-device-plugin", "aws-load-balancer-controller", "keda", "cluster-autoscaler"}
    assert by_type["aws:dynamodb/table:Table"][0]["inputs"]["name"] == "privend-prod-registry"
    assert [r["urn"] for r in resources] == sorted(r["urn"] for r in resources)


def test_plan_json_holds_no_secret_value_only_placeholders():
    from privend.cli import main as _  # noqa: F401  (the CLI is what users run)
    from privend.config import load_environment
    from privend.plan import plan_platform

    plan = plan_platform(load_environment("dev"))
    output = _plan("--env", "dev", "--format", "json")
    provider = next(r for r in json.loads(output) if r["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    # The kubeconfig is built from the cluster's CA data: neither may leak.
    cluster = next(r for r in plan.resources if r.type == "aws:eks/cluster:Cluster")
    assert cluster.outputs["certificateAuthority"]["data"] not in output
    assert "get-token" not in output


def test_plan_table_shows_the_resource_tree_and_counts():
    out = _plan("--env", "dev")
    resources = json.loads(_plan("--env", "dev", "--format", "json"))
    assert f"stack dev ({len(resources)} resources)" in out
    assert "gpu-l4-ng aws:eks/nodeGroup:NodeGroup" in out
    counts = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 4 and cells[2].isdigit():
            counts[cells[1]] = int(cells[2])
    # dev has three node groups (system-ng, gpu-l4-ng for g6.xlarge and gpu-l4-4gpu-ng for g6.12xlarge);
    # the total is every resource of the stack.
    assert counts["aws:eks/nodeGroup:NodeGroup"] == 3
    assert counts["total"] == len(resources) == sum(v for k, v in counts.items() if k != "total")


def test_plan_of_unknown_environment_is_one_line_exit_2():
    result = CliRunner().invoke(main, ["plan", "--env", "qa"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "environment 'qa' has no stack file" in result.stderr
