"""Billing rules 1-8 with hand-computed expectations, on both registry backends.

Plans (tests/billing_support.py): basic = 310.00/month, 3,100,000 tokens included,
2.00 per million beyond, protection 100.00, soft; pro = 620.00, 6,200,000, 1.00, no
protection; capped = 100.00, 1,000,000, 10.00, protection 50.00, hard; tiny = 0.05,
nothing included, 0.01 per million, no protection.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from privend.billing.reconcile import dumps, reconcile
from privend.billing.usage import import_usage
from privend.errors import InputError
from privend.registry import Registry
from tests.billing_support import ENV, add_endpoint, add_tenant, event, lines_of, utc

APRIL = utc(2025, 4, 2)  # "now" for reconciling March 2025
MARCH = "2025-03"


def run(registry: Registry, plans, period: str = MARCH, now=APRIL, **kwargs):
    return reconcile(registry, ENV, period, now=now, plans=plans, **kwargs)


def load(registry: Registry, *lines: str, now=APRIL):
    return import_usage(registry, ENV, list(lines), now=now)


def only_invoice(result):
    assert len(result.invoices) == 1
    return result.invoices[0]


# -- rules 1 to 7 --


def test_mid_month_start_prorates_fee_and_included_tokens(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 11), None)])
    # 21 of 31 days: fee 210.00, included 2,100,000; 2,600,000 used -> 500,000 over at 2.00/M = 1.00
    load(registry, event("e1", "chat", "2025-03-12T10:00:00Z", 2_000_000, 600_000))

    invoice = only_invoice(run(registry, plans))

    assert lines_of(invoice) == [
        ("chat", "base_fee", "0.677419", "210.00"),
        ("chat", "overage", 500_000, "1.00"),
    ]
    assert invoice["total"] == "211.00"
    assert invoice["currency"] == "USD"


def test_plan_change_mid_month_bills_each_segment_and_boundary_event_to_the_new_plan(
    registry: Registry, plans
) -> None:
    add_tenant(registry)
    change = utc(2025, 3, 11)
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), change), ("pro", change, None)])
    load(
        registry,
        # basic: 10/31 -> 100.00 and 1,000,000 included; 1,500,000 used -> 500,000 over -> 1.00
        event("a", "chat", "2025-03-05T00:00:00Z", 1_500_000),
        # exactly at the change: the new segment's [start, end) holds it, not the old one's
        event("b", "chat", "2025-03-11T00:00:00Z", 4_000_000),
        # pro: 21/31 -> 420.00 and 4,200,000 included; 4,500,000 used -> 300,000 over at 1.00/M -> 0.30
        event("c", "chat", "2025-03-31T23:59:59.999999Z", 500_000),
    )

    invoice = only_invoice(run(registry, plans))

    assert [(l["plan"], l["kind"], l["quantity"], l["amount"]) for l in invoice["lines"]] == [
        ("basic", "base_fee", "0.322581", "100.00"),
        ("basic", "overage", 500_000, "1.00"),
        ("pro", "base_fee", "0.677419", "420.00"),
        ("pro", "overage", 300_000, "0.30"),
    ]
    assert invoice["total"] == "521.30"


def test_deleted_endpoint_is_billed_until_its_subscription_ended_even_after_its_record_is_gone(
    registry: Registry, plans
) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 2, 1), utc(2025, 3, 16, 12))])
    load(registry, event("e1", "chat", "2025-03-16T11:59:59Z", 1_600_000),
         event("e2", "chat", "2025-03-16T12:00:00Z", 9))  # after the end: quarantined
    registry.delete_endpoint(ENV, "chat", expected_version=1)  # what sync does after destroying the stack
    registry.delete_tenant(ENV, "acme")

    invoice = only_invoice(run(registry, plans))

    # 15.5 of 31 days = 1/2: fee 155.00, included 1,550,000; 1,600,000 used -> 50,000 over -> 0.10
    assert lines_of(invoice) == [("chat", "base_fee", "0.500000", "155.00"), ("chat", "overage", 50_000, "0.10")]
    assert [q.reason for q in registry.list_quarantine(ENV)] == ["outside_subscription"]


def test_dst_month_in_tenant_time_zone_is_an_hour_short_and_starts_at_local_midnight(
    registry: Registry, plans
) -> None:
    add_tenant(registry, "paris", timezone="Europe/Paris")
    # March 2025 in Paris: 2025-02-28T23:00Z to 2025-03-31T22:00Z, 743 hours (DST began on the 30th).
    # From local midnight of the 17th (16th 23:00Z): 359 of 743 hours.
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 16, 23), None)], tenant="paris")
    add_endpoint(registry, "early", [("basic", utc(2025, 1, 1), None)], tenant="paris")
    load(
        registry,
        event("in-march-locally", "early", "2025-02-28T23:30:00+00:00", 3_100_001),  # 00:30 on 1 March in Paris
        event("april-locally", "early", "2025-03-31T22:00:00Z", 5_000_000),  # 00:00 on 1 April in Paris
        event("c1", "chat", "2025-03-20T12:00:00+01:00", 1_497_847),
    )

    invoice = only_invoice(run(registry, plans))

    # 310 × 359/743 = 149.7846... -> 149.78; included floor(3,100,000 × 359/743) = 1,497,846
    assert lines_of(invoice) == [
        ("chat", "base_fee", "0.483176", "149.78"),
        ("chat", "overage", 1, "0.00"),
        ("early", "base_fee", "1.000000", "310.00"),
        ("early", "overage", 1, "0.00"),
    ]
    assert invoice["total"] == "459.78"


def test_period_of_a_utc_tenant_is_the_utc_month(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 16, 23), None)])

    invoice = only_invoice(run(registry, plans))

    # 15 days and 1 hour of 31 days: 310 × 361/744 = 150.416... -> 150.42 (Paris would be 149.78)
    assert lines_of(invoice) == [("chat", "base_fee", "0.485215", "150.42")]


def test_line_amounts_round_half_to_even_once_per_line(registry: Registry, plans) -> None:
    add_tenant(registry)
    # February 2025 has 28 days: from the 15th is exactly half. 0.05 / 2 = 0.025 -> 0.02 (not 0.03)
    add_endpoint(registry, "a", [("tiny", utc(2025, 2, 15), None)])
    add_endpoint(registry, "b", [("tiny", utc(2025, 2, 15), None)])
    load(
        registry,
        event("a1", "a", "2025-02-20T00:00:00Z", 2_500_000),  # 0.025 -> 0.02
        event("b1", "b", "2025-02-20T00:00:00Z", 3_499_999, 1),  # 0.035 -> 0.04
        now=utc(2025, 3, 1),
    )

    invoice = only_invoice(run(registry, plans, "2025-02", now=utc(2025, 3, 1)))

    assert lines_of(invoice) == [
        ("a", "base_fee", "0.500000", "0.02"),
        ("a", "overage", 2_500_000, "0.02"),
        ("b", "base_fee", "0.500000", "0.02"),
        ("b", "overage", 3_500_000, "0.04"),
    ]
    # The total is the sum of the rounded lines (0.10), not the rounded exact sum (0.11).
    assert invoice["total"] == "0.10"


def test_overage_is_capped_at_the_prorated_protection_and_uncapped_without_one(
    registry: Registry, plans
) -> None:
    add_tenant(registry)
    add_endpoint(registry, "full", [("basic", utc(2025, 1, 1), None)])
    add_endpoint(registry, "part", [("basic", utc(2025, 3, 11), None)])
    add_endpoint(registry, "open", [("pro", utc(2025, 1, 1), None)])
    add_endpoint(registry, "under", [("basic", utc(2025, 1, 1), None)])
    load(
        registry,
        event("f", "full", "2025-03-20T00:00:00Z", 63_100_000),  # 60M over × 2.00 = 120.00 -> cap 100.00
        event("p", "part", "2025-03-20T00:00:00Z", 62_100_000),  # 60M over = 120.00 -> cap 100 × 21/31 = 67.74
        event("o", "open", "2025-03-20T00:00:00Z", 66_200_000),  # 60M over × 1.00 = 60.00, no protection
        event("u", "under", "2025-03-20T00:00:00Z", 50_100_000),  # 47M over = 94.00, under the cap
    )

    invoice = only_invoice(run(registry, plans))

    overage = {l["endpoint"]: l["amount"] for l in invoice["lines"] if l["kind"] == "overage"}
    assert overage == {"full": "100.00", "part": "67.74", "open": "60.00", "under": "94.00"}


def test_usage_within_included_tokens_has_no_overage_line(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
    load(registry, event("e", "chat", "2025-03-20T00:00:00Z", 3_000_000, 100_000))  # exactly included

    assert lines_of(only_invoice(run(registry, plans))) == [("chat", "base_fee", "1.000000", "310.00")]


def test_one_invoice_per_tenant_sorted_by_tenant_and_endpoint(registry: Registry, plans) -> None:
    add_tenant(registry, "zeta", account="111111111111")
    add_tenant(registry, "acme")
    add_endpoint(registry, "b", [("basic", utc(2025, 1, 1), None)], tenant="acme")
    add_endpoint(registry, "a", [("pro", utc(2025, 1, 1), None)], tenant="acme")
    add_endpoint(registry, "z", [("basic", utc(2025, 1, 1), None)], tenant="zeta")
    add_endpoint(registry, "later", [("basic", utc(2025, 4, 1), None)], tenant="zeta")

    result = run(registry, plans)

    assert [(i["tenant"], [l["endpoint"] for l in i["lines"]], i["total"]) for i in result.invoices] == [
        ("acme", ["a", "b"], "930.00"),
        ("zeta", ["z"], "310.00"),
    ]


def test_reconciling_an_open_period_again_gives_byte_identical_json(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 3, 11), None)])
    load(registry, event("e1", "chat", "2025-03-12T10:00:00Z", 9_000_000))

    first = dumps(run(registry, plans).to_json())
    second = dumps(run(registry, plans, now=APRIL + timedelta(hours=5)).to_json())

    assert first == second
    assert "\"amount\": \"13.80\"" in first  # 21/31 of March: 2,100,000 included, 6,900,000 over at 2.00/M


# -- finalize and late usage (rule 8) --


def test_finalized_period_never_changes_and_says_so(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
    load(registry, event("e1", "chat", "2025-03-12T10:00:00Z", 3_000_000))
    final = run(registry, plans, finalize=True)
    load(registry, event("late", "chat", "2025-03-20T10:00:00Z", 600_000))

    again = run(registry, plans, finalize=True)

    assert final.finalized
    assert final.changed
    assert again.finalized
    assert not again.changed
    assert again.message == "period 2025-03 in env dev is finalized; nothing changed"
    assert dumps(again.to_json()) == dumps(final.to_json())
    assert lines_of(again.invoices[0]) == [("chat", "base_fee", "1.000000", "310.00")]


def test_late_events_are_billed_as_adjustments_on_the_first_open_period(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
    load(registry, event("e1", "chat", "2025-03-12T10:00:00Z", 3_000_000))
    run(registry, plans, finalize=True)
    # March re-rated with 600,000 late tokens: 500,000 over -> 1.00 more than was billed.
    load(registry, event("late1", "chat", "2025-03-20T10:00:00Z", 600_000), now=utc(2025, 4, 5))

    april = only_invoice(run(registry, plans, "2025-04", now=utc(2025, 4, 6), finalize=True, force=True))

    assert april["lines"][-1] == {"endpoint": "chat", "kind": "adjustment", "plan": "basic",
                                  "quantity": 600_000, "amount": "1.00", "original_period": "2025-03"}
    assert april["total"] == "311.00"
    # More late March usage after April is final: only the part not yet billed, on May.
    load(registry, event("late2", "chat", "2025-03-21T10:00:00Z", 500_000), now=utc(2025, 5, 2))
    may = only_invoice(run(registry, plans, "2025-05", now=utc(2025, 5, 3)))
    assert may["lines"][-1] == {"endpoint": "chat", "kind": "adjustment", "plan": "basic",
                                "quantity": 500_000, "amount": "1.00", "original_period": "2025-03"}
    # Neither finalized invoice changed.
    assert lines_of(run(registry, plans).invoices[0]) == [("chat", "base_fee", "1.000000", "310.00")]
    assert only_invoice(run(registry, plans, "2025-04", now=utc(2025, 5, 3)))["total"] == "311.00"


def test_late_events_in_capped_overage_adjust_only_up_to_the_cap(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
    load(registry, event("e1", "chat", "2025-03-12T10:00:00Z", 48_100_000))  # 45M over -> 90.00
    run(registry, plans, finalize=True)
    load(registry, event("late", "chat", "2025-03-20T10:00:00Z", 20_000_000), now=utc(2025, 4, 5))

    april = only_invoice(run(registry, plans, "2025-04", now=utc(2025, 4, 6)))

    # Re-rated: 65M over = 130.00, capped at 100.00; billed 90.00 -> 10.00
    assert lines_of(april)[-1] == ("chat", "adjustment", 20_000_000, "10.00")


def test_no_adjustment_without_late_events(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("basic", utc(2025, 1, 1), None)])
    load(registry, event("e1", "chat", "2025-03-12T10:00:00Z", 9_000_000))
    run(registry, plans, finalize=True)

    april = only_invoice(run(registry, plans, "2025-04", now=utc(2025, 4, 6)))

    assert [l["kind"] for l in april["lines"]] == ["base_fee"]


def test_unknown_plan_in_a_subscription_is_one_line_error(registry: Registry, plans) -> None:
    add_tenant(registry)
    add_endpoint(registry, "chat", [("gold", utc(2025, 1, 1), None)])

    with pytest.raises(InputError) as raised:
        run(registry, plans)

    assert str(raised.value) == ("endpoint 'chat' has a subscription to plan 'gold', which the plans catalog "
                                 "does not define (plans: basic, capped, pro, tiny)")


@pytest.mark.parametrize("period", ["2025-3", "2025-13", "March", ""])
def test_bad_period_is_refused_in_one_line(registry: Registry, plans, period: str) -> None:
    with pytest.raises(InputError) as raised:
        run(registry, plans, period)
    assert str(raised.value) == f"--period {period!r} must be a month as YYYY-MM, like 2026-03"
