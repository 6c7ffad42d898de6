"""Quota checks: Service Quotas through botocore's Stubber, CloudWatch usage through moto.

moto does not implement Service Quotas for EC2, so those calls go to a real
boto3 client with a Stubber, which checks every request against the real AWS
service model. CloudWatch usage metrics are written to and read from moto.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from privend.capacity import Demand, PoolSpec, plan_capacity
from privend.errors import PrivendError
from privend.quotas import (
    AwsClients,
    PoolNodes,
    QuotaVerdict,
    check_quotas,
    pool_nodes_at_max_scale,
    request_increases,
)

G_ON_DEMAND, P_ON_DEMAND, G_SPOT = "L-DB2E81BA", "L-417A185B", "L-3819A6DF"


@pytest.fixture
def aws(no_aws_credentials, monkeypatch):
    """moto for CloudWatch, a stubbed real Service Quotas client; fake credentials only."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        service_quotas = boto3.client("service-quotas", region_name="us-east-1")
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        with Stubber(service_quotas) as stubber:
            yield AwsClients(service_quotas, cloudwatch), stubber
            stubber.assert_no_pending_responses()


def usage(cloudwatch, usage_class: str, vcpus: float, minutes_ago: int = 5) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Usage",
        MetricData=[{
            "MetricName": "ResourceCount",
            "Dimensions": [
                {"Name": "Service", "Value": "EC2"},
                {"Name": "Type", "Value": "Resource"},
                {"Name": "Resource", "Value": "vCPU"},
                {"Name": "Class", "Value": usage_class},
            ],
            "Value": vcpus,
            "Timestamp": datetime.now(timezone.utc) - timedelta(minutes=minutes_ago),
        }],
    )


def quota(code: str, value: float) -> dict:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": code, "Value": value}}


def applied(stubber, code: str, value: float) -> None:
    stubber.add_response("get_service_quota", quota(code, value), {"ServiceCode": "ec2", "QuotaCode": code})


def history(stubber, code: str, requests: list[dict], next_token: str | None = None,
            after: str | None = None) -> None:
    response = {"RequestedQuotas": [{"QuotaCode": code, "ServiceCode": "ec2", **r} for r in requests]}
    if next_token:
        response["NextToken"] = next_token
    expected = {"ServiceCode": "ec2", "QuotaCode": code}
    if after:
        expected["NextToken"] = after
    stubber.add_response("list_requested_service_quota_change_history_by_quota", response, expected)


def filed(stubber, code: str, desired: float, request_id: str = "req-new") -> None:
    stubber.add_response(
        "request_service_quota_increase",
        {"RequestedQuota": {"Id": request_id, "QuotaCode": code, "DesiredValue": desired, "Status": "PENDING"}},
        {"ServiceCode": "ec2", "QuotaCode": code, "DesiredValue": desired},
    )


def test_enough_quota_is_ok_and_counts_every_pool_on_the_same_quota(aws):
    clients, stubber = aws
    usage(clients.cloudwatch, "G/OnDemand", 48)
    usage(clients.cloudwatch, "P/OnDemand", 1000)  # another class: must not count
    applied(stubber, G_ON_DEMAND, 512.0)
    nodes = [PoolNodes("l4", "g6.12xlarge", "on-demand", 2), PoolNodes("l40s", "g6e.48xlarge", "on-demand", 1)]

    (verdict,) = check_quotas(nodes, clients)

    assert verdict.quota_code == G_ON_DEMAND
    assert verdict.vcpus_needed == 2 * 48 + 192
    assert (verdict.quota, verdict.quota_source, verdict.usage) == (512, "applied", 48)
    assert (verdict.status, verdict.shortfall) == ("ok", 0)
    assert verdict.pools == ("l4", "l40s")


def test_a_quota_of_zero_names_the_code_and_the_shortfall(aws):
    clients, stubber = aws
    applied(stubber, P_ON_DEMAND, 0.0)

    (verdict,) = check_quotas([PoolNodes("h100", "p5.48xlarge", "on-demand", 1)], clients)

    assert (verdict.status, verdict.shortfall, verdict.usage) == ("quota-zero", 192, 0)
    assert verdict.message == (
        "L-417A185B (Running On-Demand P instances (vCPUs)): pools h100 need 192 vCPUs at max scale; "
        "quota 0 (applied), in use 0: quota is 0, short by 192 vCPUs"
    )


def test_current_usage_counts_against_the_quota(aws):
    clients, stubber = aws
    usage(clients.cloudwatch, "G/Spot", 64)
    applied(stubber, G_SPOT, 128.0)

    (verdict,) = check_quotas([PoolNodes("l4", "g6.12xlarge", "spot", 2)], clients)

    # 64 in use + 96 needed = 160 against 128.
    assert (verdict.status, verdict.shortfall, verdict.desired_value) == ("insufficient", 32, 160)
    assert verdict.message.endswith("short by 32 vCPUs")


def test_usage_is_the_peak_of_the_last_hour_only(aws):
    clients, stubber = aws
    usage(clients.cloudwatch, "G/OnDemand", 48, minutes_ago=50)
    usage(clients.cloudwatch, "G/OnDemand", 96, minutes_ago=20)
    usage(clients.cloudwatch, "G/OnDemand", 48, minutes_ago=2)
    usage(clients.cloudwatch, "G/OnDemand", 900, minutes_ago=180)  # too old
    applied(stubber, G_ON_DEMAND, 1000.0)

    (verdict,) = check_quotas([PoolNodes("l4", "g6.12xlarge", "on-demand", 1)], clients)

    assert verdict.usage == 96


def test_missing_applied_quota_falls_back_to_the_aws_default(aws):
    clients, stubber = aws
    stubber.add_client_error("get_service_quota", service_error_code="NoSuchResourceException",
                             service_message="The request failed because the specified service quota does not exist.",
                             expected_params={"ServiceCode": "ec2", "QuotaCode": G_ON_DEMAND})
    stubber.add_response("get_aws_default_service_quota", quota(G_ON_DEMAND, 64.0),
                         {"ServiceCode": "ec2", "QuotaCode": G_ON_DEMAND})

    (verdict,) = check_quotas([PoolNodes("l4", "g6.12xlarge", "on-demand", 1)], clients)

    assert (verdict.quota, verdict.quota_source, verdict.status) == (64, "default", "ok")


def test_a_plans_max_scale_nodes_feed_the_check_by_quota_code(aws):
    clients, stubber = aws
    pools = {
        "h100": PoolSpec("h100", ("p5.48xlarge",), "on-demand", 0, 10),
        "l4": PoolSpec("l4", ("g6.xlarge", "g6.12xlarge"), "spot", 0, 10),
    }
    demands = [Demand("big", "acme", "h100", 8, 1, 2), Demand("small", "acme", "l4", 4, 1, 3)]
    nodes = pool_nodes_at_max_scale(plan_capacity(demands, pools))
    assert sorted((n.pool, n.instance_type, n.capacity_type, n.nodes) for n in nodes) == [
        ("h100", "p5.48xlarge", "on-demand", 2),
        ("l4", "g6.12xlarge", "spot", 3),
    ]
    applied(stubber, G_SPOT, 1000.0)
    applied(stubber, P_ON_DEMAND, 1000.0)

    verdicts = check_quotas(nodes, clients)

    assert [(v.quota_code, v.vcpus_needed) for v in verdicts] == [(G_SPOT, 3 * 48), (P_ON_DEMAND, 2 * 192)]


def test_request_increase_asks_for_the_shortfall_only(aws):
    clients, stubber = aws
    usage(clients.cloudwatch, "G/Spot", 64)
    applied(stubber, G_SPOT, 128.0)
    (verdict,) = check_quotas([PoolNodes("l4", "g6.12xlarge", "spot", 2)], clients)
    history(stubber, G_SPOT, [])
    filed(stubber, G_SPOT, 160.0)  # quota 128 + shortfall 32

    (request,) = request_increases([verdict], clients.service_quotas)

    assert (request.quota_code, request.desired_value, request.request_id, request.status, request.filed) == (
        G_SPOT, 160, "req-new", "PENDING", True)


def test_no_request_for_quotas_that_suffice(aws):
    clients, stubber = aws
    applied(stubber, G_ON_DEMAND, 512.0)
    verdicts = check_quotas([PoolNodes("l4", "g6.12xlarge", "on-demand", 1)], clients)

    # Nothing stubbed: any call to Service Quotas would fail the test.
    assert request_increases(verdicts, clients.service_quotas) == []


@pytest.mark.parametrize("status", ["PENDING", "CASE_OPENED"])
def test_an_open_request_for_the_same_quota_prevents_a_second_one(aws, status):
    clients, stubber = aws
    applied(stubber, P_ON_DEMAND, 0.0)
    verdicts = check_quotas([PoolNodes("h100", "p5.48xlarge", "on-demand", 1)], clients)
    history(stubber, P_ON_DEMAND, [{"Id": "req-old", "DesiredValue": 192.0, "Status": status}])

    (request,) = request_increases(verdicts, clients.service_quotas)

    assert (request.request_id, request.status, request.filed) == ("req-old", status, False)


def test_an_open_request_on_a_later_page_of_history_still_counts(aws):
    clients, stubber = aws
    applied(stubber, P_ON_DEMAND, 0.0)
    verdicts = check_quotas([PoolNodes("h100", "p5.48xlarge", "on-demand", 1)], clients)
    history(stubber, P_ON_DEMAND, [{"Id": "req-1", "DesiredValue": 96.0, "Status": "DENIED"}], next_token="page-2")
    history(stubber, P_ON_DEMAND, [{"Id": "req-2", "DesiredValue": 192.0, "Status": "PENDING"}], after="page-2")

    (request,) = request_increases(verdicts, clients.service_quotas)

    assert (request.request_id, request.filed) == ("req-2", False)


def test_a_denied_previous_request_allows_a_new_one(aws):
    clients, stubber = aws
    applied(stubber, P_ON_DEMAND, 0.0)
    verdicts = check_quotas([PoolNodes("h100", "p5.48xlarge", "on-demand", 1)], clients)
    history(stubber, P_ON_DEMAND, [{"Id": "req-old", "DesiredValue": 192.0, "Status": "DENIED"}])
    filed(stubber, P_ON_DEMAND, 192.0)

    (request,) = request_increases(verdicts, clients.service_quotas)

    assert (request.request_id, request.filed, request.desired_value) == ("req-new", True, 192)


def test_access_denied_is_one_line_naming_the_operation(aws):
    clients, stubber = aws
    stubber.add_client_error("get_service_quota", service_error_code="AccessDeniedException",
                             service_message="not authorized to perform servicequotas:GetServiceQuota")

    with pytest.raises(PrivendError) as error:
        check_quotas([PoolNodes("l4", "g6.12xlarge", "on-demand", 1)], clients)
    assert str(error.value) == (
        "quota check failed: GetServiceQuota: AccessDeniedException: "
        "not authorized to perform servicequotas:GetServiceQuota"
    )


@pytest.fixture
def no_credentials(no_aws_credentials):
    """A boto3 session that finds no credentials."""
    return boto3.Session(region_name="us-east-1")


NO_CREDENTIALS = (
    "quota check needs AWS credentials and found none "
    "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)


def test_no_credentials_is_one_clear_line(no_credentials):
    with pytest.raises(PrivendError) as error:
        check_quotas([PoolNodes("l4", "g6.12xlarge", "on-demand", 1)], no_credentials)
    assert str(error.value) == NO_CREDENTIALS


def test_requesting_increases_without_credentials_is_the_same_line(no_credentials):
    verdict = QuotaVerdict(quota_code=P_ON_DEMAND, quota_name="Running On-Demand P instances (vCPUs)",
                           usage_class="P/OnDemand", vcpus_needed=192, quota=0, quota_source="applied",
                           usage=0, pools=("h100",))

    with pytest.raises(PrivendError) as error:
        request_increases([verdict], no_credentials.client("service-quotas"))
    assert str(error.value) == NO_CREDENTIALS
