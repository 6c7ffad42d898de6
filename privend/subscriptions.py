"""A subscription's history of plan segments: switching plans and ending it.

Pure functions over `SubscriptionSegment`s; `now` is passed in, so a segment that
has not started yet can be told from one that has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from privend.billing.periods import next_period, period_of
from privend.errors import InputError
from privend.registry.models import SubscriptionSegment


# Subscription dates the registry accepts: none before 2000 (what billing periods cover), none
# more than a year ahead (a date that far out is a typo, not a plan).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LEAD_LIMIT = timedelta(days=366)


def check_date(at: datetime, now: datetime, option: str) -> datetime:
    """`at` when it is from 2000 on and at most a year ahead of `now`; InputError otherwise."""
    if at < EARLIEST:
        raise InputError(f"{option} {at.isoformat()} is before 2000-01-01: subscriptions start from 2000 on")
    if at > now + LEAD_LIMIT:
        raise InputError(f"{option} {at.isoformat()} is more than a year ahead (now {now.isoformat(timespec='seconds')})")
    return at


def check_not_finalized(at: datetime, timezone: str, finalized: Iterable[str], option: str) -> None:
    """Refuse a plan change dated inside a finalized billing period: its invoices never change, so the
    date could not take effect."""
    period = period_of(at, timezone)
    frozen = set(finalized)
    if period in frozen:
        later = next_period(period)
        while later in frozen:
            later = next_period(later)
        raise InputError(f"{option} {at.isoformat()} falls in billing period {period}, which is finalized: "
                         f"a plan change can take effect from {later} on")


def switch_plan(segments: Sequence[SubscriptionSegment], plan: str, at: datetime,
                now: datetime) -> list[SubscriptionSegment]:
    """The history with the running segment ended at `at` and `plan` running from then."""
    if not segments or segments[-1].end is not None:
        raise InputError("the endpoint has no running subscription to change")
    last = segments[-1]
    if at <= last.start and last.start > now:
        # The current plan has not started yet: it is replaced, not ended.
        return [*segments[:-1], last.model_copy(update={"plan": plan})]
    if at <= last.start:
        raise InputError(f"plan change at {at.isoformat()} is not after the current plan's start {last.start.isoformat()}")
    return [*segments[:-1], last.model_copy(update={"end": at}), SubscriptionSegment(plan=plan, start=at)]


def end_subscription(segments: Sequence[SubscriptionSegment], at: datetime,
                     now: datetime) -> list[SubscriptionSegment]:
    """The history cut at `at`: segments that had not started by then are dropped, the running one ends.

    A subscription that has not started yet can be dropped whole; ending a started
    one before its own start is a mistake and is refused.
    """
    if segments and at <= segments[0].start and segments[0].start <= now:
        raise InputError(f"end at {at.isoformat()} is not after the subscription's start "
                         f"{segments[0].start.isoformat()}")
    kept = [s for s in segments if s.start < at]
    if kept and (kept[-1].end is None or kept[-1].end > at):
        kept[-1] = kept[-1].model_copy(update={"end": at})
    return kept
