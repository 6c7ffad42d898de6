"""Margin of a billing period per endpoint: what it was invoiced against what it cost to serve.

Pure arithmetic over figures other modules produce:
- revenue: the period's stored invoice lines of the endpoint (base fees, overage and
  adjustments for late usage of earlier finalized periods), as billed;
- compute: the endpoint's attributed cost in the simulation of the period's usage
  (`privend.simulator`: the GPU-hours its replicas hold, at the per-GPU on-demand
  price of their nodes);
- network: its internal NLB (hourly plus an assumed NLCU usage) and one PrivateLink
  interface endpoint per AZ, at the prices of `privend.cost`, for the time within
  the period that the endpoint was subscribed;
- platform overhead: what the pools cost beyond what endpoints are attributed (warm
  headroom, minSize floors, nodes waiting to go, fragmentation). It is one row of its
  own, never spread over endpoints.

Money is Decimal. Every figure is rounded once, half-even, to cents: revenue comes
in cents from the invoices, compute and overhead in cents from the simulator, and
network is computed exactly from the subscribed microseconds and rounded once.
Margins are differences of cent figures, so they need no rounding of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from privend.billing.rating import cents_to_decimal, parse_cents
from privend.cost import (
    DEFAULT_AVAILABILITY_ZONES,
    DEFAULT_NLCU_PER_HOUR,
    INTERFACE_ENDPOINT_HOURLY_PER_AZ,
    NETWORK_PRICES_READ_ON,
    NETWORK_PRICES_REGION,
    NLB_HOURLY,
    NLB_NLCU_HOURLY,
    cents,
    nlb_hourly,
    privatelink_hourly,
)
from privend.errors import PrivendError
from privend.registry.billing import SubscriptionSegment, to_us

CURRENCY = "USD"  # the currency of the GPU catalog's and the network's prices
TENTH = Decimal("0.1")
US_PER_HOUR = 3_600_000_000


def network_hourly(availability_zones: int = DEFAULT_AVAILABILITY_ZONES,
                   nlcu_per_hour: Decimal = DEFAULT_NLCU_PER_HOUR) -> Decimal:
    """One endpoint's NLB (hourly plus its NLCU-hours) and interface endpoint (per AZ), per hour."""
    return nlb_hourly(nlcu_per_hour) + privatelink_hourly(availability_zones)


def network_cost(subscribed_us: int, availability_zones: int = DEFAULT_AVAILABILITY_ZONES,
                 nlcu_per_hour: Decimal = DEFAULT_NLCU_PER_HOUR) -> Decimal:
    """Network of one endpoint over `subscribed_us` microseconds, exact until rounded to cents once."""
    return cents(Fraction(network_hourly(availability_zones, nlcu_per_hour)) * subscribed_us / US_PER_HOUR)


def subscribed_us(segments: Iterable[SubscriptionSegment], start_us: int, end_us: int) -> int:
    """How long within [start_us, end_us) the segments cover (they never overlap), in microseconds."""
    total = 0
    for segment in segments:
        low = max(to_us(segment.start), start_us)
        high = min(to_us(segment.end), end_us) if segment.end is not None else end_us
        total += max(0, high - low)
    return total


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole in percent, to one decimal (half-even); None when `whole` is 0."""
    if not whole:
        return None
    return (part * 100 / whole).quantize(TENTH, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Revenue:
    """What one endpoint's invoice lines of a period add up to."""

    tenant: str
    plans: tuple[str, ...]  # in the order the lines name them
    amount: Decimal


def revenue_by_endpoint(invoices: Sequence[Mapping[str, Any]]) -> dict[str, Revenue]:
    """Per endpoint, the sum of its lines in the period's invoices (as `billing export --format json` has them).

    Refuses an invoice in another currency than the prices': revenue and costs must be in one.
    """
    found: dict[str, tuple[str, list[str], int]] = {}
    for invoice in invoices:
        if invoice["currency"] != CURRENCY:
            raise PrivendError(f"tenant '{invoice['tenant']}' is invoiced in {invoice['currency']}, but compute and "
                               f"network are priced in {CURRENCY}: margin needs one currency")
        for line in invoice["lines"]:
            tenant, plans, total = found.setdefault(line["endpoint"], (invoice["tenant"], [], 0))
            if line["plan"] not in plans:
                plans.append(line["plan"])
            found[line["endpoint"]] = (tenant, plans, total + parse_cents(line["amount"]))
    return {name: Revenue(tenant, tuple(plans), cents_to_decimal(total))
            for name, (tenant, plans, total) in found.items()}


@dataclass(frozen=True)
class Compute:
    """One endpoint as the simulation of the period priced it."""

    tenant: str
    attributed: Decimal


@dataclass(frozen=True)
class EndpointMargin:
    endpoint: str
    tenant: str
    plans: tuple[str, ...]
    revenue: Decimal
    compute: Decimal
    network: Decimal

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.compute - self.network

    @property
    def margin_percent(self) -> Decimal | None:
        return percent(self.margin, self.revenue)

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "tenant": self.tenant, "plans": list(self.plans),
                "revenue": str(self.revenue), "compute": str(self.compute), "network": str(self.network),
                "margin": str(self.margin), "margin_percent": _text(self.margin_percent)}


@dataclass(frozen=True)
class MarginReport:
    env: str
    period: str
    finalized: bool
    endpoints: tuple[EndpointMargin, ...]
    overhead: Decimal  # the pools' platform overhead in the simulation, never spread over endpoints
    availability_zones: int
    nlcu_per_hour: Decimal
    simulation_window: tuple[str, str]
    prices_read_on: str

    @property
    def revenue(self) -> Decimal:
        return sum((e.revenue for e in self.endpoints), Decimal("0.00"))

    @property
    def compute(self) -> Decimal:
        """Attributed compute of every endpoint plus the platform overhead: what the pools cost."""
        return sum((e.compute for e in self.endpoints), Decimal("0.00")) + self.overhead

    @property
    def network(self) -> Decimal:
        return sum((e.network for e in self.endpoints), Decimal("0.00"))

    @property
    def margin(self) -> Decimal:
        """After the platform overhead."""
        return self.revenue - self.compute - self.network

    @property
    def margin_percent(self) -> Decimal | None:
        return percent(self.margin, self.revenue)

    @property
    def assumptions(self) -> tuple[str, ...]:
        start, end = self.simulation_window
        return (
            "revenue: the period's invoice lines as last reconciled (base fees, overage, adjustments), "
            "in each tenant's billing time zone",
            f"compute: GPU-hours an endpoint's replicas hold in the simulation of the usage ledger from {start} to "
            f"{end} (UTC), at the per-GPU on-demand price of their nodes (GPU catalog, read {self.prices_read_on}); "
            "every endpoint registered now is simulated over the whole month",
            "platform overhead: pool cost beyond what endpoints hold (warm headroom, minSize floors, nodes waiting "
            "to go, fragmentation), not spread over endpoints",
            f"network: per endpoint an internal NLB at ${NLB_HOURLY}/h plus {self.nlcu_per_hour} NLCU at "
            f"${NLB_NLCU_HOURLY}/h and a PrivateLink interface endpoint at ${INTERFACE_ENDPOINT_HOURLY_PER_AZ}/h in "
            f"{self.availability_zones} AZs, for the hours of the UTC month it was subscribed "
            f"({NETWORK_PRICES_REGION}, read {NETWORK_PRICES_READ_ON}); per-GB charges excluded",
        )

    def to_dict(self) -> dict[str, Any]:
        start, end = self.simulation_window
        return {
            "env": self.env,
            "period": self.period,
            "finalized": self.finalized,
            "currency": CURRENCY,
            "window": {"start": start, "end": end},
            "prices_read_on": self.prices_read_on,
            "network_prices_read_on": NETWORK_PRICES_READ_ON,
            "assumptions": list(self.assumptions),
            "endpoints": [e.to_dict() for e in self.endpoints],
            "platform_overhead": str(self.overhead),
            "totals": {"revenue": str(self.revenue), "compute": str(self.compute), "network": str(self.network),
                       "margin": str(self.margin), "margin_percent": _text(self.margin_percent)},
        }


def margin_report(*, env: str, period: str, finalized: bool, invoices: Sequence[Mapping[str, Any]],
                  compute: Mapping[str, Compute], overhead: Decimal, subscribed: Mapping[str, int],
                  simulation_window: tuple[str, str], prices_read_on: str,
                  availability_zones: int = DEFAULT_AVAILABILITY_ZONES,
                  nlcu_per_hour: Decimal = DEFAULT_NLCU_PER_HOUR) -> MarginReport:
    """One row per endpoint that was invoiced or simulated, sorted by tenant and name.

    `subscribed` is each endpoint's subscribed time within the period's UTC month, in microseconds.
    """
    revenue = revenue_by_endpoint(invoices)
    rows = []
    for name in {*revenue, *compute}:
        billed, served = revenue.get(name), compute.get(name)
        network = network_cost(subscribed.get(name, 0), availability_zones, nlcu_per_hour)
        attributed = cents(served.attributed) if served is not None else Decimal("0.00")
        if billed is not None:
            rows.append(EndpointMargin(name, billed.tenant, billed.plans, billed.amount, attributed, network))
        elif served is not None:
            rows.append(EndpointMargin(name, served.tenant, (), Decimal("0.00"), attributed, network))
    rows.sort(key=lambda row: (row.tenant, row.endpoint))
    return MarginReport(env, period, finalized, tuple(rows), cents(overhead), availability_zones, nlcu_per_hour,
                        simulation_window, prices_read_on)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
