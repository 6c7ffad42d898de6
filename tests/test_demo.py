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
