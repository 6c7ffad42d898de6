"""Admission against GPU pool capacity: atomic with the registry write, and on update and scale too.

dev's pool l4 (g6.xlarge with 1 GPU, g6.12xlarge with 4; maxSize 4) holds at
most 16 GPUs of shared replicas at maximum scale. The fleets below are sized so
that one more 4-GPU replica fits and two do not.

Every test that takes `backend` runs once on SQLite (PRIVEND_HOME, conftest)
and once on DynamoDB (moto, through PRIVEND_REGISTRY), as the CLI opens them.
Races are run two ways: two threads released together after both passed the
check (the outcome must be one winner whatever the scheduling), and a hook
that puts a rival's write exactly between a writer's check and its write.
"""

from __future__ import annotations

import json
import threading
from functools import partial
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import privend.quotas
import privend.service.endpoints

from privend.service.endpoints import change_endpoint
from privend.errors import InputError, PrivendError
from privend.admission import increases_demand
from privend.quotas import MissingCredentials
from privend.registry import ConflictError, Endpoint, SubscriptionSegment, Tenant, spec_hash
from privend.registry import dynamodb as dynamodb_backend
from privend.registry.dynamodb import table_schema
from privend.spec import TenantSpec, build_spec, validate_request
from tests.thread_support import moto_one_request_at_a_time, run_together
from tests.cli_support import (
    admit,
    assert_one_line_error,
    load_environment,
    ok,
    open_registry,
    private_stacks,
    record_request,
    run,
)

TABLE = "privend-admission-test"
REGION = "us-east-1"
ACME = "111122223333"
MODEL_70B = "meta-llama/Llama-3.1-70B-Instruct"
CUSTOM = {"model": "acme-ai/custom-32b", "max_input_tokens": 4096, "max_total_tokens": 8192}
CUSTOM_4GPU = ("--model", CUSTOM["model"], "--gpus-per-replica", "4", "--max-input-tokens", "4096",
               "--max-total-tokens", "8192")
L4_TAIL = ("pool 'l4' allows at most 4 (maxSize in ")


# -- helpers --


def registry_state(env: str = "dev") -> list[dict]:
    """Every endpoint of `env` in full: spec, version, timestamps and subscription history."""
    with open_registry() as registry:
        return [
            {**e.model_dump(mode="json"),
             "subscription": [s.model_dump(mode="json") for s in registry.get_subscription(env, e.name)]}
            for e in registry.list_endpoints(env)
        ]


def names(env: str = "dev") -> list[str]:
    with open_registry() as registry:
        return [e.name for e in registry.list_endpoints(env)]


def custom_request(name: str, gpus: int = 4, replicas: int = 1, tenant: str = "acme", **fields: Any):
    return validate_request(name=name, tenant=tenant, gpus_per_replica=gpus, min_replicas=1,
                            max_replicas=replicas, **{**CUSTOM, **fields})


STANDARD = [SubscriptionSegment(plan="standard", start=privend.service.endpoints.now())]


def endpoint_of(spec) -> Endpoint:
    """The registry record of a freshly created endpoint with this spec."""
    data = spec.model_dump(mode="json")
    now = privend.service.endpoints.now()
    return Endpoint(env=spec.env, name=spec.name, tenant=spec.tenant, spec=data, spec_hash=spec_hash(data),
                    created_at=now, updated_at=now)


def record(registry, name: str, gpus: int = 4, replicas: int = 1) -> Endpoint:
    """Store a dev endpoint as `endpoint create` sizes it, without the CLI's checks: fleets set up fast."""
    spec = build_spec(custom_request(name, gpus, replicas), TenantSpec.from_record(registry.get_tenant("dev", "acme")),
                      load_environment("dev"))
    return registry.create_endpoint(endpoint_of(spec), STANDARD)


def create_admitted(registry, name: str, gpus: int = 4, replicas: int = 1) -> Endpoint:
    """What `endpoint create` does: check the pool, then record with the check made again as it writes."""
    cfg = load_environment("dev")
    request = custom_request(name, gpus, replicas)
    return record_request(registry, cfg, request, admission=admit(registry, cfg, request))


# -- fixtures --


@pytest.fixture(autouse=True)
def quota_step_finds_no_credentials(no_aws_credentials, monkeypatch):
    """No real AWS anywhere; `endpoint create`'s quota step always finds no credentials, even under moto's fake ones."""

    def no_credentials(cfg):
        raise MissingCredentials("no AWS credentials in tests")

    monkeypatch.setattr(privend.quotas, "aws_clients", no_credentials)


@pytest.fixture(autouse=True)
def stacks(monkeypatch, tmp_path) -> Path:
    """A private copy of the stack files, so a test may lower a pool's maxSize."""
    return private_stacks(monkeypatch, tmp_path)


@pytest.fixture
def no_policy_check(monkeypatch):
    """The offline policy check runs Pulumi's mock runtime, which wants the main thread: not under test here."""
    monkeypatch.setattr(privend.service.endpoints, "check_policy", lambda spec, cfg: None)


@pytest.fixture
def moto_dynamodb(monkeypatch):
    """moto's DynamoDB answering one request at a time, as DynamoDB applies each request atomically."""
    moto_one_request_at_a_time(monkeypatch, REGION)
    # Every CLI command opens a registry and so a client: one session (made here, in the main
    # thread, like every client of these tests) loads DynamoDB's service model once, not each time.
    session = boto3.session.Session()
    monkeypatch.setattr(boto3.session, "Session", lambda: session)
    with mock_aws():
        session.client("dynamodb", region_name=REGION).create_table(TableName=TABLE, **table_schema())
        yield


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request, monkeypatch) -> str:
    if request.param == "dynamodb":
        request.getfixturevalue("moto_dynamodb")
        monkeypatch.setenv("PRIVEND_REGISTRY", f"dynamodb://{TABLE}?region={REGION}")
    ok("tenant", "create", "acme", "--aws-account", ACME)
    return request.param


@pytest.fixture
def nearly_full(backend) -> str:
    """base: 4 GPUs x 3 replicas = 12 of l4's 16 GPUs at max scale: room for one more 4-GPU replica."""
    with open_registry() as registry:
        record(registry, "base", gpus=4, replicas=3)
    return backend


@pytest.fixture
def fleet(backend) -> str:
    """chat (1 GPU x 3) and big (4 GPUs x 2): 11 GPUs, 3 nodes of l4's 4 at max scale."""
    with open_registry() as registry:
        record(registry, "chat", gpus=1, replicas=3)
        record(registry, "big", gpus=4, replicas=2)
    return backend


# -- create: the race --


def refusal_of(name: str, replicas: int, gpus_in_pool: int, nodes: int, without: int) -> str:
    return (f"InputError: endpoint '{name}' does not fit pool 'l4': at max scale (4 GPU(s) x {replicas} replicas for "
            f"'{name}', {gpus_in_pool} GPUs in the pool in all) the pool would need {nodes} nodes even of its largest "
            f"type g6.12xlarge (4 GPUs each), {without} without it; {L4_TAIL}")


def test_two_creators_released_together_after_both_passed_the_check_one_wins(nearly_full, no_policy_check):
    cfg = load_environment("dev")
    for round_ in range(3):
        first, second = f"a{round_}", f"b{round_}"
        registries = [open_registry(), open_registry()]  # one connection or client each, as two processes
        checked = threading.Barrier(2)

        def create(registry, name: str, checked: threading.Barrier = checked) -> None:
            request = custom_request(name)
            admission = admit(registry, cfg, request)
            assert admission is not None
            assert admission.fit.fits  # each alone fits
            checked.wait(timeout=60)  # both checked before either writes
            record_request(registry, cfg, request, admission=admission)

        outcomes = run_together(partial(create, registries[0], first), partial(create, registries[1], second))

        assert outcomes.count("ok") == 1, outcomes
        winner, loser = (first, second) if outcomes[0] == "ok" else (second, first)
        refusal = outcomes[1 - outcomes.index("ok")]
        assert refusal.startswith(refusal_of(loser, 1, 20, 5, 4)), refusal
        assert "\n" not in refusal
        assert names() == sorted(["base", winner])
        for registry in registries:
            registry.close()
        with open_registry() as registry:  # room again for the next round
            registry.delete_endpoint("dev", winner, expected_version=1)


def rival_creates_before_the_write(monkeypatch, name: str = "early") -> None:
    """`endpoint create` passes its check; before it writes, another operator's create of `name` lands."""
    quota_step = privend.service.endpoints.quota_notice

    def rival_records_first(admission, cfg, *, strict):
        with open_registry() as registry:
            create_admitted(registry, name)
        return quota_step(admission, cfg, strict=strict)

    monkeypatch.setattr(privend.service.endpoints, "quota_notice", rival_records_first)


def test_create_that_a_rival_overtakes_between_check_and_write_is_refused_with_the_numbers(nearly_full, monkeypatch):
    rival_creates_before_the_write(monkeypatch)
    result = run("endpoint", "create", "late", "--tenant", "acme", *CUSTOM_4GPU, "--replicas", "1:1", "--no-deploy")

    assert_one_line_error(result, 2, refusal_of("late", 1, 20, 5, 4)[len("InputError: "):])
    assert "lower the replicas MAX, use another pool, or raise maxSize" in result.stderr
    assert result.stdout == ""
    assert names() == ["base", "early"]


def test_create_that_still_fits_after_a_rival_got_in_is_recorded(backend, monkeypatch):
    with open_registry() as registry:
        record(registry, "base", gpus=4, replicas=2)  # 8 GPUs: room for two more 4-GPU replicas
    rival_creates_before_the_write(monkeypatch)
    ok("endpoint", "create", "late", "--tenant", "acme", *CUSTOM_4GPU, "--replicas", "1:1", "--no-deploy")
    assert names() == ["base", "early", "late"]


def test_sqlite_check_runs_under_the_write_lock_so_a_rival_waits_and_then_sees_it():
    # The DynamoDB counterpart is the retry test below: there a rival can write in between, and loses nothing.
    ok("tenant", "create", "acme", "--aws-account", ACME)
    cfg = load_environment("dev")
    first = open_registry()
    record(first, "base", gpus=4, replicas=3)
    admission = admit(first, cfg, custom_request("first"))
    guard = admission.guard(cfg)
    second = open_registry()  # another connection, as another process (opened first: opening migrates)
    writing = threading.Event()
    rival: dict[str, Any] = {}

    def rival_create() -> None:
        try:
            rival_admission = admit(second, cfg, custom_request("rival"))  # 'first' is not stored yet
            writing.set()
            second.create_endpoint(endpoint_of(rival_admission.spec), STANDARD, admit=rival_admission.guard(cfg))
            rival["outcome"] = "ok"
        except PrivendError as error:
            rival["outcome"] = str(error)

    def check_while_a_rival_tries_to_write(endpoints: list[Endpoint]) -> None:
        guard(endpoints)
        rival["thread"] = threading.Thread(target=rival_create)
        rival["thread"].start()
        assert writing.wait(timeout=60)
        time.sleep(0.5)
        rival["waiting"] = rival["thread"].is_alive()  # blocked on the write lock this check holds

    first.create_endpoint(endpoint_of(admission.spec), STANDARD, admit=check_while_a_rival_tries_to_write)
    rival["thread"].join(timeout=60)
    first.close()
    second.close()

    assert rival["waiting"] is True
    assert rival["outcome"].startswith(refusal_of("rival", 1, 20, 5, 4)[len("InputError: "):]), rival["outcome"]
    assert names() == ["base", "first"]


@pytest.fixture
def dynamo(moto_dynamodb, monkeypatch):
    monkeypatch.setattr(dynamodb_backend, "_TRANSACTION_BACKOFF_SECONDS", 0)
    monkeypatch.setenv("PRIVEND_REGISTRY", f"dynamodb://{TABLE}?region={REGION}")
    ok("tenant", "create", "acme", "--aws-account", ACME)
    with open_registry() as registry:
        record(registry, "base", gpus=4, replicas=3)
    registry = open_registry()
    calls: list[str] = []
    registry._client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    yield registry, calls
    registry.close()


def test_dynamodb_create_checks_again_when_a_rival_wrote_after_its_check(dynamo):
    registry, calls = dynamo
    cfg = load_environment("dev")
    request = custom_request("late")
    admission = admit(registry, cfg, request)
    guard = admission.guard(cfg)
    seen: list[list[str]] = []

    def check_then_rival(endpoints: list[Endpoint]) -> None:
        seen.append([e.name for e in endpoints])
        guard(endpoints)
        if len(seen) == 1:  # a rival commits after this check read the fleet, before this write
            with open_registry() as rival:
                create_admitted(rival, "early")

    calls.clear()
    with pytest.raises(InputError) as refused:
        registry.create_endpoint(endpoint_of(admission.spec), STANDARD, admit=check_then_rival)

    assert str(refused.value).startswith(refusal_of("late", 1, 20, 5, 4)[len("InputError: "):])
    assert seen == [["base"], ["base", "early"]]  # checked again on what was stored then
    # Capacity version, endpoints, then the transaction its condition cancelled; the same again, refused.
    assert calls == ["GetItem", "Query", "TransactWriteItems", "GetItem", "Query"]
    assert names() == ["base", "early"]
    # Nothing half-written: the tenant's endpoint count balances, so it can go once its endpoints have.
    for name in ("base", "early"):
        registry.delete_endpoint("dev", name, expected_version=1)
    registry.delete_tenant("dev", "acme")


def test_dynamodb_create_gives_up_in_one_line_when_the_fleet_keeps_changing(dynamo):
    registry, _ = dynamo
    attempts: list[int] = []

    def changes_under_it(endpoints: list[Endpoint]) -> None:
        attempts.append(len(endpoints))
        with open_registry() as rival:  # a spec change elsewhere after every check
            base = rival.get_endpoint("dev", "base")
            spec = {**base.spec, "revision": f"r{len(attempts)}"}
            rival.update_endpoint("dev", "base", expected_version=base.version, spec=spec, spec_hash=spec_hash(spec))

    now = privend.service.endpoints.now()
    with pytest.raises(ConflictError) as busy:
        registry.create_endpoint(Endpoint(env="dev", name="late", tenant="acme", spec={"x": 1}, spec_hash="h",
                                          created_at=now, updated_at=now), [], admit=changes_under_it)

    assert str(busy.value) == ("endpoints in env dev kept changing while endpoint 'late' was being admitted; "
                               "nothing recorded; retry")
    assert len(attempts) == dynamodb_backend._ADMISSION_ATTEMPTS
    assert names() == ["base"]
    registry.delete_endpoint("dev", "base", expected_version=registry.get_endpoint("dev", "base").version)
    registry.delete_tenant("dev", "acme")


def test_dynamodb_writes_that_do_not_add_demand_stay_single_puts(dynamo):
    registry, calls = dynamo
    base = registry.get_endpoint("dev", "base")
    calls.clear()
    registry.update_endpoint("dev", "base", expected_version=base.version, status="ready", deployed_hash="h")
    assert calls == ["GetItem", "PutItem"]


# -- update and scale --


SCALE_REFUSAL = (
    "endpoint 'chat' does not fit pool 'l4' with this change: at max scale (1 GPU(s) x 9 replicas for 'chat', "
    "17 GPUs in the pool in all) the pool would need 5 nodes even of its largest type g6.12xlarge (4 GPUs each), "
    f"3 with its current spec; {L4_TAIL}"
)


@pytest.mark.parametrize(("args", "message"), [
    (("scale", "chat", "--replicas", "1:9"), SCALE_REFUSAL),
    (("update", "chat", "--replicas", "2:9"), SCALE_REFUSAL),
    (("update", "chat", "--gpus-per-replica", "2", "--replicas", "1:5"),
     "endpoint 'chat' does not fit pool 'l4' with this change: at max scale (2 GPU(s) x 5 replicas for 'chat', "
     "18 GPUs in the pool in all) the pool would need 5 nodes even of its largest type g6.12xlarge (4 GPUs each), "
     f"3 with its current spec; {L4_TAIL}"),
    (("update", "big", "--gpus-per-replica", "4", "--replicas", "1:4"),
     "endpoint 'big' does not fit pool 'l4' with this change: at max scale (4 GPU(s) x 4 replicas for 'big', "
     "19 GPUs in the pool in all) the pool would need 5 nodes even of its largest type g6.12xlarge (4 GPUs each), "
     f"3 with its current spec; {L4_TAIL}"),
], ids=["scale", "update-replicas", "update-gpus-and-replicas", "update-custom"])
def test_update_and_scale_that_do_not_fit_are_refused_with_the_numbers_and_record_nothing(fleet, args, message):
    before = registry_state()
    result = run("endpoint", *args, "--no-deploy")
    assert_one_line_error(result, 2, message)
    assert result.stderr.rstrip("\n").endswith("lower the replicas MAX, use another pool, or raise maxSize")
    assert result.stdout == ""
    assert registry_state() == before


def test_update_and_scale_that_fit_are_recorded(fleet):
    ok("endpoint", "scale", "chat", "--replicas", "1:5", "--no-deploy")  # 8 + 5 = 13 GPUs: 4 nodes
    ok("endpoint", "update", "chat", "--gpus-per-replica", "2", "--replicas", "1:4", "--no-deploy")  # 16: 4 nodes
    with open_registry() as registry:
        spec = registry.get_endpoint("dev", "chat").spec
    assert (spec["gpus_per_replica"], spec["max_replicas"]) == (2, 4)


def test_change_that_a_rival_overtakes_between_check_and_write_is_refused(fleet, monkeypatch):
    admit_change = privend.service.endpoints.admit_change

    def rival_scales_first(endpoints, cfg, current, spec, source):
        admission = admit_change(endpoints, cfg, current, spec, source)  # chat to 1:7 alone: 15 GPUs, fits
        if spec.name == "chat":
            with open_registry() as rival:  # big to 4 x 3 alone: 15 GPUs, fits; both: 19
                change_endpoint(rival, cfg, "big", min_replicas=1, max_replicas=3)
        return admission

    monkeypatch.setattr(privend.service.endpoints, "admit_change", rival_scales_first)
    before = {e["name"]: e for e in registry_state()}
    result = run("endpoint", "scale", "chat", "--replicas", "1:7", "--no-deploy")

    assert_one_line_error(
        result, 2,
        "endpoint 'chat' does not fit pool 'l4' with this change: at max scale (1 GPU(s) x 7 replicas for 'chat', "
        "19 GPUs in the pool in all) the pool would need 5 nodes even of its largest type g6.12xlarge (4 GPUs each), "
        f"4 with its current spec; {L4_TAIL}")
    after = {e["name"]: e for e in registry_state()}
    assert after["chat"] == before["chat"]
    assert after["big"]["spec"]["max_replicas"] == 3


def test_changes_that_do_not_add_demand_pass_in_a_pool_already_over_its_max(fleet, stacks):
    # The operator lowered maxSize under the fleet: 3 nodes needed, 2 allowed.
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      maxSize: 4\n", "      maxSize: 2\n"))
    pool = json.loads(ok("capacity", "plan", "--format", "json").stdout)["pools"][0]
    assert pool["fit"]["fits"] is False
    assert pool["fit"]["nodes_needed_fewest"] == 3

    ok("endpoint", "scale", "chat", "--replicas", "2:3", "--no-deploy")  # MIN up, MAX as it was
    ok("endpoint", "scale", "chat", "--replicas", "1:2", "--no-deploy")  # MAX down
    ok("endpoint", "update", "chat", "--max-input-tokens", "2048", "--max-total-tokens", "4096", "--no-deploy")
    ok("endpoint", "update", "chat", "--plan", "scale", "--no-deploy")
    ok("endpoint", "update", "big", "--gpus-per-replica", "2", "--no-deploy")  # fewer GPUs per replica
    ok("endpoint", "update", "chat", "--model", "Qwen/Qwen2.5-7B-Instruct", "--no-deploy")  # 1 GPU, as before
    specs = {e["name"]: e["spec"] for e in registry_state()}
    assert (specs["chat"]["min_replicas"], specs["chat"]["max_replicas"], specs["chat"]["plan"]) == (1, 2, "scale")
    assert specs["chat"]["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert specs["big"]["gpus_per_replica"] == 2

    # chat 1 x 2 and big 2 x 2 now fit 2 nodes; with maxSize 1 the pool is over again, and a step up is checked:
    # to 1:5 it needs a third node and is refused; to 1:3 it still needs 2 and passes.
    path.write_text(path.read_text().replace("      maxSize: 2\n", "      maxSize: 1\n"))
    before = registry_state()
    assert_one_line_error(run("endpoint", "scale", "chat", "--replicas", "1:5", "--no-deploy"), 2,
                          "endpoint 'chat' does not fit pool 'l4' with this change:")
    assert registry_state() == before
    ok("endpoint", "scale", "chat", "--replicas", "1:3", "--no-deploy")
    ok("endpoint", "scale", "chat", "--replicas", "1:1", "--no-deploy")  # and a step down is never checked


def test_moving_to_a_pool_that_cannot_hold_it_is_refused_with_the_new_pools_numbers(monkeypatch):
    monkeypatch.setenv("PRIVEND_ENV", "prod")
    ok("tenant", "create", "acme", "--aws-account", ACME)
    with open_registry() as registry:
        cfg = load_environment("prod")
        for name, pool, replicas in (("large", "l40s", 1), ("resident", "h100", 6)):
            request = validate_request(name=name, tenant="acme", model=MODEL_70B, pool=pool, min_replicas=1,
                                       max_replicas=replicas)
            record_request(registry, cfg, request, admission=admit(registry, cfg, request))
        gpus = registry.get_endpoint("prod", "resident").spec["gpus_per_replica"]
    before = registry_state("prod")

    result = run("endpoint", "update", "large", "--pool", "h100", "--replicas", "1:3", "--no-deploy")

    # h100: 4 x p5.48xlarge (8 GPUs): resident's 6 replicas take 3 nodes, 3 more need 2 more.
    assert_one_line_error(
        result, 2,
        f"endpoint 'large' does not fit pool 'h100': at max scale ({gpus} GPU(s) x 3 replicas for 'large', "
        f"{gpus * 9} GPUs in the pool in all) the pool would need 5 nodes even of its largest type p5.48xlarge "
        "(8 GPUs each), 3 without it; pool 'h100' allows at most 4 (maxSize in ")
    assert registry_state("prod") == before


# -- what counts as more demand --


@pytest.mark.parametrize(("change", "increases"), [
    ({"max_replicas": 4}, True),
    ({"gpus_per_replica": 4}, True),
    ({"pool": "elsewhere"}, True),
    ({"tier": "dedicated"}, True),
    ({"max_replicas": 2}, False),
    ({"min_replicas": 3}, False),
    ({"max_total_tokens": 4096, "model": "other/model", "plan": "scale", "image": "stock"}, False),
    ({"gpus_per_replica": 1}, False),
    ({"max_replicas": 6, "gpus_per_replica": 1}, True),  # fewer GPUs each, more replicas: checked
])
def test_increases_demand(change, increases):
    cfg = load_environment("dev")
    tenant = TenantSpec.from_record(Tenant(env="dev", name="acme", aws_account=ACME, principals=[f"arn:aws:iam::{ACME}:root"],
                                tier="shared", created_at=privend.service.endpoints.now()))
    current = build_spec(custom_request("x", gpus=2, replicas=3), tenant, cfg)
    assert increases_demand(current, current.model_copy(update=change)) is increases
    assert increases_demand(current, current) is False


def test_a_reshaped_endpoint_that_needs_no_more_nodes_passes_in_a_pool_already_over_its_max(fleet, stacks):
    # chat 1 x 3 and big 4 x 2: 3 nodes of g6.12xlarge; the operator lowered maxSize to 2.
    path = stacks / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("      maxSize: 4\n", "      maxSize: 2\n"))

    # big as 2 GPUs x 4: the same 8 GPUs, still 3 nodes with chat: no worse, so recorded.
    ok("endpoint", "update", "big", "--gpus-per-replica", "2", "--replicas", "1:4", "--no-deploy")
    spec = {e["name"]: e["spec"] for e in registry_state()}["big"]
    assert (spec["gpus_per_replica"], spec["max_replicas"]) == (2, 4)

    # 2 GPUs x 5: 13 GPUs in the pool, 4 nodes: worse than the 3 it needs now, so refused.
    before = registry_state()
    assert_one_line_error(run("endpoint", "update", "big", "--replicas", "1:5", "--no-deploy"), 2,
                          "endpoint 'big' does not fit pool 'l4' with this change:")
    assert registry_state() == before
