"""`privend demo`: the README's main job runs offline end to end and leaves the operator's registry alone."""

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
