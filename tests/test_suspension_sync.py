"""Hard cap: a suspended endpoint is scaled to zero by the next sync, once, and lifted in full."""

from __future__ import annotations

from privend.config import load_environment
from privend.deploy import DeployOutcome
from privend.service.endpoints import sync
from privend.spec import EndpointSpec
from privend.service.tenants import record_tenant
from tests.cli_support import open_registry, record_request
from privend.render import render_endpoint
from privend.spec import validate_request, validate_tenant


class RecordingDeployer:
    def __init__(self):
        self.deployed = []

    def check(self):
        pass

    def deploy(self, spec, cfg):
        self.deployed.append(spec)
        return DeployOutcome(True, "ok", {})

    def destroy(self, spec, cfg):
        raise AssertionError("nothing is destroyed here")


def _setup():
    cfg = load_environment("dev")
    with open_registry() as registry:
        record_tenant(registry, "dev", validate_tenant(name="acme", aws_account="111122223333"))
        record_request(registry, cfg, validate_request(name="chat", tenant="acme", plan="starter",
                                                     model="meta-llama/Llama-3.1-8B-Instruct",
                                                     min_replicas=1, max_replicas=3))
    return cfg


def _status(registry, name="chat"):
    return registry.get_endpoint("dev", name)


def test_suspended_endpoint_is_deployed_at_zero_once_then_redeployed_in_full_when_lifted():
    cfg = _setup()
    deployer = RecordingDeployer()
    assert [r.ok for r in sync(open_registry, cfg, deployer, 2)] == [True]
    with open_registry() as registry:
        ready = _status(registry)
        assert ready.status == "ready"
        registry.update_endpoint("dev", "chat", expected_version=ready.version, status="suspended",
                                 status_message="hard cap of plan starter reached for 2026-11")

    (result,) = sync(open_registry, cfg, deployer, 2)
    assert result.ok
    assert result.message == "scaled to zero: hard cap of plan starter reached for 2026-11"
    spec = deployer.deployed[-1]
    assert spec.suspended is True
    assert spec.min_replicas == 0
    assert spec.max_replicas == 3
    with open_registry() as registry:
        assert _status(registry).status == "suspended"
    assert sync(open_registry, cfg, deployer, 2) == []  # deployed at zero once, not again

    with open_registry() as registry:
        current = _status(registry)
        registry.update_endpoint("dev", "chat", expected_version=current.version, status="pending",
                                 status_message="suspension lifted")
    (lifted,) = sync(open_registry, cfg, deployer, 2)
    assert lifted.ok
    assert deployer.deployed[-1].suspended is False
    assert deployer.deployed[-1].min_replicas == 1
    with open_registry() as registry:
        assert _status(registry).status == "ready"


def test_suspended_spec_pauses_keda_at_zero_replicas():
    cfg = _setup()
    with open_registry() as registry:
        spec = EndpointSpec.from_record(registry.get_endpoint("dev", "chat"))
    paused = spec.model_copy(update={"suspended": True, "min_replicas": 0})
    scaled = next(o for o in render_endpoint(paused, cfg) if o["kind"] == "ScaledObject")
    assert scaled["metadata"]["annotations"] == {"autoscaling.keda.sh/paused-replicas": "0"}
    normal = next(o for o in render_endpoint(spec, cfg) if o["kind"] == "ScaledObject")
    assert "annotations" not in normal["metadata"]


def test_unknown_plan_is_refused_with_the_known_ones():
    import pytest

    from privend.errors import InputError

    cfg = load_environment("dev")
    with open_registry() as registry:
        record_tenant(registry, "dev", validate_tenant(name="acme", aws_account="111122223333"))
        with pytest.raises(InputError, match=r"unknown plan 'gold' \(plans: enterprise-hard, payg, scale, standard, starter\)"):
            record_request(registry, cfg, validate_request(name="chat", tenant="acme", plan="gold",
                                                         model="meta-llama/Llama-3.1-8B-Instruct"))
        assert registry.list_endpoints("dev") == []
