"""The billing rules 2 to 7: proration, included tokens, overage with its protection, rounding.

Everything is exact: fractions of a period are `Fraction`s of microseconds, fees
and rates are Decimals turned into Fractions without loss, and each line amount
is rounded once, half-even, to whole cents (an int). Amounts leave this module
as cents or as two-decimal strings, never as floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from privend.billing.plans import Plan
from privend.billing.periods import period_bounds
from privend.errors import InputError
from privend.registry.billing import BillingSubscription, to_us

TOKENS_PER_MILLION = 1_000_000


def round_cents(amount: Fraction) -> int:
    """`amount` (in currency units) rounded half-even to whole cents."""
    return round(amount * 100)  # Fraction.__round__ rounds halves to even


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def cents_to_decimal(cents: int) -> Decimal:
    return Decimal(format_cents(cents))


def parse_cents(text: str) -> int:
    return int(Decimal(text).scaleb(2).to_integral_exact())


def proration_text(fraction: Fraction) -> str:
    """A fraction of the period as a readable six-decimal string (display only; amounts use the exact value)."""
    millionths = round(fraction * 1_000_000)
    return f"{millionths // 1_000_000}.{millionths % 1_000_000:06d}"


@dataclass(frozen=True)
class Window:
    """One subscription segment clipped to one period: what a base fee and an overage line rate."""

    endpoint: str
    tenant: str
    plan: Plan
    start_us: int
    end_us: int
    fraction: Fraction

    @property
    def included(self) -> int:
        """Rule 4: floor(included_tokens × f)."""
        return math.floor(self.plan.included_tokens * self.fraction)

    def basis(self, usage: int) -> dict[str, Any]:
        """What a finalized invoice keeps to re-rate this window when late usage arrives."""
        return {"endpoint": self.endpoint, "plan": self.plan.terms(), "start_us": self.start_us,
                "end_us": self.end_us, "fraction": f"{self.fraction.numerator}/{self.fraction.denominator}",
                "usage": usage}

    @staticmethod
    def from_basis(tenant: str, data: dict[str, Any]) -> Window:
        return Window(data["endpoint"], tenant, Plan.model_validate(data["plan"]), data["start_us"],
                      data["end_us"], Fraction(data["fraction"]))


@dataclass(frozen=True)
class Line:
    endpoint: str
    kind: str  # base_fee | overage | adjustment
    plan: str
    quantity: int | str
    cents: int
    original_period: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"endpoint": self.endpoint, "kind": self.kind, "plan": self.plan,
                                "quantity": self.quantity, "amount": format_cents(self.cents)}
        if self.original_period is not None:
            data["original_period"] = self.original_period
        return data


@dataclass(frozen=True)
class Rated:
    lines: tuple[Line, ...]
    usage: int
    overage_tokens: int
    cap_reached: bool

    @property
    def cents(self) -> int:
        return sum(line.cents for line in self.lines)


def windows_in_period(
    subscription: BillingSubscription, period: str, plans: dict[str, Plan]
) -> list[Window]:
    """Rule 2: each segment's share f of `period` in the tenant's time zone, exactly."""
    start, end = period_bounds(period, subscription.billing_timezone)
    length = end - start
    windows = []
    for segment in subscription.segments:
        low = max(to_us(segment.start), start)
        high = min(to_us(segment.end), end) if segment.end is not None else end
        if high <= low:
            continue
        plan = plans.get(segment.plan)
        if plan is None:
            raise InputError(
                f"endpoint '{subscription.endpoint}' has a subscription to plan {segment.plan!r}, "
                f"which the plans catalog does not define (plans: {', '.join(sorted(plans))})"
            )
        windows.append(Window(subscription.endpoint, subscription.tenant, plan, low, high,
                              Fraction(high - low, length)))
    return windows


def rate_window(window: Window, usage: int) -> Rated:
    """Rules 3, 5 and 6 for one window with `usage` tokens, each line rounded once (rule 7)."""
    plan, fraction = window.plan, window.fraction
    lines = [Line(window.endpoint, "base_fee", plan.name, proration_text(fraction),
                  round_cents(Fraction(plan.monthly_fee) * fraction))]
    overage = max(0, usage - window.included)
    cap_reached = False
    if overage > 0:
        amount = Fraction(overage) * Fraction(plan.overage_per_million_tokens) / TOKENS_PER_MILLION
        if plan.max_overage is not None:
            cap = Fraction(plan.max_overage) * fraction
            if amount >= cap:
                amount, cap_reached = cap, True
        lines.append(Line(window.endpoint, "overage", plan.name, overage, round_cents(amount)))
    return Rated(tuple(lines), usage, overage, cap_reached)
