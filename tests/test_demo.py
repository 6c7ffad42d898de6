"""`privend demo`: the README's main job runs offline end to end and leaves the operator's registry alone."""

from decimal import Decimal

import pytest
from click.testing import CliRunner

from privend.cli import main

# The demo's `endpoint create` steps check EC2 quotas where AWS credentials exist.
pytestmark = pytest.mark.usefixtures("no_aws_credentials")


def test_demo_plans_a_sample_environment_end_to_end_in_a_throwaway_registry(tmp_path, monkeypatch):
    home = tmp_path / "operator-home"
    monkeypatch.setenv("PRIVEND_HOME", str(home))
    result = CliRunner().invoke(main, ["demo", "--env", "dev"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for section in ("== tenants of env dev", "== endpoints, recorded without deploying",
                    "== offline plan of the platform stack and every endpoint stack",
                    "== capacity and cost", "== what the customer of endpoint 'chat' needs"):
        assert section in out
    for stack in ("stack dev ", "stack dev-chat", "stack dev-batch", "stack dev-assist"):
        assert stack in out
    assert "aws ec2 create-vpc-endpoint" in out
    assert "Authorization: Bearer $PRIVEND_API_KEY" in out
    assert "mandatory" not in result.stderr  # the sample is compliant
    assert not home.exists()  # nothing written to the operator's registry


def test_demo_headline_compares_on_demand_with_dedicated_at_peak_and_keeps_spot_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVEND_HOME", str(tmp_path / "operator-home"))
    out = CliRunner().invoke(main, ["demo", "--env", "dev"]).stdout
    # dev's l4 pool: chat (1..3) and assist (globex's own node, 1..2) on one g6.xlarge each at min,
    # 0.8048 x 730 = 587.50 each; batch scales to zero. Network 35.40 per endpoint: 1175.00 + 106.20.
    # At max, 7 g6.xlarge: chat 3 (1762.51), batch 2 and assist 2 (1175.01 each), + 106.20 = 4218.73.
    # Dedicated at peak, on-demand g6.xlarge for each endpoint's MAX: the same 3 + 2 + 2 instances.
    # Saving at min: (4218.73 - 1281.20) / 4218.73 = 69.6 %. Spot, apart: 1175.00 x 0.60 + 106.20 = 811.20.
    assert ("env dev, on-demand, USD / month: pooled $1,281.20 at min scale, $4,218.73 at max scale (platform "
            "overhead $0.00 at min, $0.00 at max); dedicated at peak (peak taken as replicas MAX) $4,218.73: pooled "
            "saves 69.6 % at min scale, saves 0.0 % at max scale (prices read 2026-11-26)") in out
    assert "on spot (assumed 0.60 x on-demand): pooled $811.20 / month at min scale, not in any saving" in out
    assert "dedicated baseline" not in out


def test_demo_ends_with_the_margin_table_of_the_running_month(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVEND_HOME", str(tmp_path / "operator-home"))
    monkeypatch.setenv("PRIVEND_ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:operator-alerts")
    result = CliRunner().invoke(main, ["demo", "--env", "dev"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    connect = out.index("== what the customer of endpoint 'chat' needs")
    margin = out.index("== margin of ")
    assert connect < margin
    assert "3 sample usage event(s) imported; period " in out[margin:]
    assert out.rstrip().splitlines()[-1].startswith("└")  # the margin table is the last thing printed
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.split("│")[1:-1]]
                                          for line in out[margin:].splitlines() if "│" in line)}
    assert list(rows) == ["batch", "chat", "assist", "platform overhead", "total"]
    assert [rows[name][1] for name in ("batch", "chat", "assist")] == ["acme", "acme", "globex"]

    def money(text: str) -> Decimal:
        return Decimal(text.replace("$", "").replace(",", ""))

    for name in ("batch", "chat", "assist"):
        revenue, compute, network, margin_ = (money(rows[name][i]) for i in (3, 4, 5, 6))
        assert revenue > 0 and margin_ == revenue - compute - network
    # chat used 120M tokens on standard (100M included at most, 2.50 per million beyond): at least $50 of overage.
    assert money(rows["chat"][3]) - money(rows["batch"][3]) >= Decimal("49.99")
    assert money(rows["total"][3]) == sum(money(rows[name][3]) for name in ("batch", "chat", "assist"))
    assert "published" not in out[margin:]  # the operator's alert topic is not the demo's
