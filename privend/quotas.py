"""EC2 GPU vCPU quotas: are they enough for the pools at maximum scale, and asking for more.

EC2 limits running GPU instances by vCPUs per region, with one quota per
instance class and purchase option. For each quota the environment's pools count
against, `check_quotas` compares what maximum scale needs with the quota applied
to the account (Service Quotas; AWS's default when nothing was ever applied) less
what is running now (CloudWatch usage metrics). `request_increases` files
increase requests for the shortfall, never while one is already open.

What an environment counts
- `quota check` asks whether the account can run every pool at its configured
  maxSize, the most the cluster autoscaler may reach, with nodes of the pool's
  largest type (by vCPUs): a node group that mixes types may launch any of them.
- `endpoint create` asks whether the fleet with the new endpoint, at maximum
  scale as planned, fits the quota its pool counts against. Usage counts
  everything running in the account and region, this environment's nodes
  included, so both checks err towards warning.

Definitions
- needed: the sum over pools of nodes at maximum scale x vCPUs of their type.
- usage: the maximum, over the last hour, of the quota's usage metric
  (namespace AWS/Usage, ResourceCount, Service=EC2, Type=Resource,
  Resource=vCPU, Class=<class>/<OnDemand|Spot>). It is everything running in the
  account and region, the environment's own nodes included, so counting it on
  top of `needed` errs towards asking for too much, never too little.
- shortfall: max(0, usage + needed - quota).
- desired value of an increase request (the new quota, as the API takes it):
  usage + needed, that is the current quota plus the shortfall.
Quotas and usage are whole vCPUs; a fractional reading is rounded against us
(quota down, usage up).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from privend.admission import Admission
from privend.capacity import CapacityPlan
from privend.catalog import GpuCatalog, gpu_catalog
from privend.config import EnvironmentConfig
from privend.errors import PrivendError
from privend.nodes import node_group_types

SERVICE_CODE = "ec2"
USAGE_NAMESPACE = "AWS/Usage"
USAGE_METRIC = "ResourceCount"
USAGE_WINDOW = timedelta(hours=1)
USAGE_PERIOD_SECONDS = 60  # EC2 publishes vCPU usage every minute

# The Class dimension of each quota's usage metric, as Service Quotas reports
# it in the quota's UsageMetric.
USAGE_CLASS = {
    "L-DB2E81BA": "G/OnDemand",
    "L-417A185B": "P/OnDemand",
    "L-3819A6DF": "G/Spot",
    "L-7212CCBC": "P/Spot",
}

# Increase requests in these states are still being worked on: do not file another.
OPEN_REQUEST_STATUSES = frozenset({"PENDING", "CASE_OPENED"})

Status = Literal["ok", "insufficient", "quota-zero"]

NO_CREDENTIALS = (
    "quota check needs AWS credentials and found none "
    "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)


class MissingCredentials(PrivendError):
    """No AWS credentials in this shell: quota checks cannot run (exit code 1)."""


@dataclass(frozen=True)
class PoolNodes:
    """Nodes of one instance type a pool runs at maximum scale."""

    pool: str
    instance_type: str
    capacity_type: str
    nodes: int


def pool_nodes_at_max_scale(plan: CapacityPlan) -> list[PoolNodes]:
    """The node counts per pool and type at maximum scale, from a capacity plan."""
    result = []
    for name, pool_plan in plan.pools.items():
        for instance_type, count in pool_plan.max.nodes_by_type().items():
            result.append(PoolNodes(name, instance_type, pool_plan.pool.capacity_type, count))
    return result


@dataclass(frozen=True)
class AwsClients:
    """The two clients the quota check uses; pass these or a boto3 Session."""

    service_quotas: Any
    cloudwatch: Any


@dataclass(frozen=True)
class QuotaVerdict:
    quota_code: str
    quota_name: str
    usage_class: str
    vcpus_needed: int
    quota: int
    quota_source: Literal["applied", "default"]
    usage: int
    pools: tuple[str, ...]

    @property
    def shortfall(self) -> int:
        return max(0, self.usage + self.vcpus_needed - self.quota)

    @property
    def desired_value(self) -> int:
        """The quota that would cover maximum scale: current quota plus the shortfall."""
        return self.quota + self.shortfall

    @property
    def status(self) -> Status:
        if self.shortfall == 0:
            return "ok"
        return "quota-zero" if self.quota == 0 else "insufficient"

    @property
    def message(self) -> str:
        head = (
            f"{self.quota_code} ({self.quota_name}): pools {', '.join(self.pools)} need {self.vcpus_needed} vCPUs "
            f"at max scale; quota {self.quota} ({self.quota_source}), in use {self.usage}"
        )
        if self.status == "ok":
            return f"{head}: ok"
        if self.status == "quota-zero":
            return f"{head}: quota is 0, short by {self.shortfall} vCPUs"
        return f"{head}: short by {self.shortfall} vCPUs"

    def to_dict(self) -> dict:
        return {
            "quota_code": self.quota_code,
            "quota_name": self.quota_name,
            "usage_class": self.usage_class,
            "pools": list(self.pools),
            "vcpus_needed": self.vcpus_needed,
            "quota": self.quota,
            "quota_source": self.quota_source,
            "usage": self.usage,
            "shortfall": self.shortfall,
            "desired_value": self.desired_value,
            "status": self.status,
            "message": self.message,
        }


@dataclass(frozen=True)
class QuotaRequest:
    quota_code: str
    desired_value: int
    request_id: str
    status: str
    # False when a request for the same quota was already open and nothing was filed.
    filed: bool

    def to_dict(self) -> dict:
        return {
            "quota_code": self.quota_code,
            "desired_value": self.desired_value,
            "request_id": self.request_id,
            "status": self.status,
            "filed": self.filed,
        }


def check_quotas(
    pools_max_nodes: Iterable[PoolNodes],
    session_or_clients: boto3.Session | AwsClients,
    *,
    catalog: GpuCatalog | None = None,
    now: datetime | None = None,
) -> list[QuotaVerdict]:
    """One verdict per vCPU quota the pools count against, in quota code order."""
    catalog = catalog or gpu_catalog()
    needed: dict[str, int] = defaultdict(int)
    pools: dict[str, set[str]] = defaultdict(set)
    for entry in pools_max_nodes:
        instance = catalog.get(entry.instance_type)
        code = instance.quota_code_for(entry.capacity_type)
        needed[code] += entry.nodes * instance.vcpus
        pools[code].add(entry.pool)

    end = now or datetime.now(timezone.utc)
    verdicts = []
    with _aws_errors():
        clients = _clients(session_or_clients)
        for code in sorted(needed):
            if not needed[code]:
                continue
            quota, source = _quota(clients.service_quotas, code)
            verdicts.append(
                QuotaVerdict(
                    quota_code=code,
                    quota_name=catalog.quota_codes.get(code, code),
                    usage_class=USAGE_CLASS[code],
                    vcpus_needed=needed[code],
                    quota=quota,
                    quota_source=source,
                    usage=_usage(clients.cloudwatch, USAGE_CLASS[code], end),
                    pools=tuple(sorted(pools[code])),
                )
            )
    return verdicts


def request_increases(verdicts: Iterable[QuotaVerdict], client: Any) -> list[QuotaRequest]:
    """File one increase request per quota that falls short, unless one is already open.

    `client` is a Service Quotas client. Returns what was filed, and the open
    requests that stood in for a new one.
    """
    results = []
    with _aws_errors():
        for verdict in verdicts:
            if not verdict.shortfall:
                continue
            open_request = _open_request(client, verdict.quota_code)
            if open_request is not None:
                results.append(
                    QuotaRequest(
                        quota_code=verdict.quota_code,
                        desired_value=int(open_request["DesiredValue"]),
                        request_id=open_request["Id"],
                        status=open_request["Status"],
                        filed=False,
                    )
                )
                continue
            response = client.request_service_quota_increase(
                ServiceCode=SERVICE_CODE,
                QuotaCode=verdict.quota_code,
                DesiredValue=float(verdict.desired_value),
            )
            requested = response["RequestedQuota"]
            results.append(
                QuotaRequest(
                    quota_code=verdict.quota_code,
                    desired_value=verdict.desired_value,
                    request_id=requested["Id"],
                    status=requested["Status"],
                    filed=True,
                )
            )
    return results


def _clients(session_or_clients: boto3.Session | AwsClients) -> AwsClients:
    if isinstance(session_or_clients, AwsClients):
        return session_or_clients
    return AwsClients(
        service_quotas=session_or_clients.client("service-quotas"),
        cloudwatch=session_or_clients.client("cloudwatch"),
    )


def _quota(client: Any, code: str) -> tuple[int, Literal["applied", "default"]]:
    """The quota applied to the account, or AWS's default where none was ever applied."""
    try:
        value = client.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code)["Quota"]["Value"]
        return math.floor(value), "applied"
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchResourceException":
            raise
    value = client.get_aws_default_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code)["Quota"]["Value"]
    return math.floor(value), "default"


def _usage(client: Any, usage_class: str, end: datetime) -> int:
    """Peak vCPUs in use over the last hour; no data points means nothing of that class runs."""
    response = client.get_metric_statistics(
        Namespace=USAGE_NAMESPACE,
        MetricName=USAGE_METRIC,
        Dimensions=[
            {"Name": "Service", "Value": "EC2"},
            {"Name": "Type", "Value": "Resource"},
            {"Name": "Resource", "Value": "vCPU"},
            {"Name": "Class", "Value": usage_class},
        ],
        StartTime=end - USAGE_WINDOW,
        EndTime=end,
        Period=USAGE_PERIOD_SECONDS,
        Statistics=["Maximum"],
    )
    return math.ceil(max((p["Maximum"] for p in response["Datapoints"]), default=0))


def _open_request(client: Any, code: str) -> dict | None:
    kwargs = {"ServiceCode": SERVICE_CODE, "QuotaCode": code}
    while True:
        response = client.list_requested_service_quota_change_history_by_quota(**kwargs)
        for request in response.get("RequestedQuotas", []):
            if request["Status"] in OPEN_REQUEST_STATUSES:
                return request
        if not response.get("NextToken"):
            return None
        kwargs["NextToken"] = response["NextToken"]


@contextmanager
def _aws_errors() -> Iterator[None]:
    """Turn AWS failures into one-line PrivendErrors the CLI can print."""
    try:
        yield
    except NoCredentialsError:
        raise PrivendError(
            "quota check needs AWS credentials and found none "
            "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) from None
    except NoRegionError:
        raise PrivendError("quota check needs an AWS region (set AWS_REGION or the profile's region)") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise PrivendError(
            f"quota check failed: {exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
        ) from None


# ---------------------------------------------------------------------------
# An environment's pools and endpoints against the quotas


@dataclass(frozen=True)
class QuotaBasis:
    """What one node group of a pool counts against its EC2 vCPU quota: maxSize nodes of its largest type."""

    pool: str
    instance_type: str
    capacity_type: str
    max_size: int
    vcpus_per_node: int
    quota_code: str

    @property
    def vcpus(self) -> int:
        return self.max_size * self.vcpus_per_node

    def to_dict(self) -> dict:
        return {
            "pool": self.pool,
            "instance_type": self.instance_type,
            "capacity_type": self.capacity_type,
            "max_size": self.max_size,
            "vcpus_per_node": self.vcpus_per_node,
            "vcpus": self.vcpus,
            "quota_code": self.quota_code,
        }


def quota_basis(cfg: EnvironmentConfig) -> list[QuotaBasis]:
    """Per node group of each pool (one per GPU count, `privend.nodes.node_group_types`), the nodes the
    autoscaler may reach (the pool's maxSize, which each group may reach) of its type with the most vCPUs."""
    catalog = gpu_catalog()
    result = []
    for pool in cfg.gpu_pools:
        for _, types in node_group_types(pool.instance_types):
            biggest = max((catalog.get(t) for t in types), key=lambda it: (it.vcpus, it.name))
            result.append(QuotaBasis(pool.name, biggest.name, pool.capacity_type, pool.max_size, biggest.vcpus,
                                     biggest.quota_code_for(pool.capacity_type)))
    return result


def pool_nodes_for_quota(basis: Iterable[QuotaBasis]) -> list[PoolNodes]:
    return [PoolNodes(b.pool, b.instance_type, b.capacity_type, b.max_size) for b in basis]


def aws_clients(cfg: EnvironmentConfig) -> AwsClients:
    """Service Quotas and CloudWatch clients in the environment's region; MissingCredentials when there are none."""
    try:
        session = boto3.Session(region_name=cfg.region)
        if session.get_credentials() is None:
            raise MissingCredentials(NO_CREDENTIALS)
        return AwsClients(service_quotas=session.client("service-quotas"), cloudwatch=session.client("cloudwatch"))
    except BotoCoreError as exc:
        raise PrivendError(f"quota check cannot use the AWS configuration: {exc}") from None


def endpoint_quota_verdicts(admission: Admission, cfg: EnvironmentConfig, clients: AwsClients) -> list[QuotaVerdict]:
    """Verdicts for the quota codes the new endpoint's pool counts against, for the planned fleet at max scale."""
    catalog = gpu_catalog()
    pool = cfg.pool(admission.spec.pool)
    codes = {catalog.get(t).quota_code_for(pool.capacity_type) for t in pool.instance_types}
    nodes = [
        n for n in pool_nodes_at_max_scale(admission.plan)
        if catalog.get(n.instance_type).quota_code_for(n.capacity_type) in codes
    ]
    return check_quotas(nodes, clients)


def endpoint_quota_notice(admission: Admission, cfg: EnvironmentConfig, *, strict: bool,
                          clients: Callable[[EnvironmentConfig], AwsClients] = aws_clients) -> str | None:
    """The quota step of `endpoint create`: a one-line note or warning to print, or None when all is well.

    With `strict`, a shortfall, missing credentials or a failed check raise
    PrivendError (exit code 1) instead: the request is valid, the account is not ready.
    """
    name = admission.spec.name
    try:
        verdicts = endpoint_quota_verdicts(admission, cfg, clients(cfg))
    except MissingCredentials:
        if strict:
            raise PrivendError(
                f"--strict-quota: cannot check EC2 vCPU quotas for endpoint {name!r}: no AWS credentials found "
                "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); nothing recorded"
            ) from None
        return "note: EC2 vCPU quota check skipped: no AWS credentials (run `privend quota check` where there are)"
    except PrivendError as exc:
        if strict:
            raise PrivendError(f"--strict-quota: {exc}; nothing recorded") from None
        return f"warning: EC2 vCPU quota check skipped: {exc}"
    short = [v for v in verdicts if v.shortfall]
    if not short:
        return None
    detail = "; ".join(v.message for v in short)
    hint = f"request more with `privend quota check --env {cfg.environment} --request-increase`"
    if strict:
        raise PrivendError(f"endpoint {name!r} would exceed an EC2 vCPU quota: {detail}; nothing recorded; {hint}")
    return f"warning: endpoint {name!r} would exceed an EC2 vCPU quota: {detail}; {hint}"
