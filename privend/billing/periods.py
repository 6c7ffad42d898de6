"""Billing periods: calendar months in a tenant's time zone, as exact UTC instants.

A period `YYYY-MM` runs from the first instant of that month to the first
instant of the next, local time (rule 1). Its length is real: a month with a
DST change is an hour shorter or longer. Instants are integer microseconds since
the epoch (see `privend.registry.billing`), so lengths and overlaps are exact.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from privend.errors import InputError
from privend.registry.billing import from_us, to_us

# ASCII digits only: `\d` would take other scripts' digits, which int() then reads as numbers.
_PERIOD = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
# Billing periods the registry can hold: its instants and each period's end (the next month) stay
# inside what datetime represents, and no subscription starts before 2000.
FIRST_PERIOD, LAST_PERIOD = "2000-01", "2999-12"


def parse_period(text: str, option: str = "--period") -> tuple[int, int]:
    match = _PERIOD.fullmatch(text or "")
    if not match:
        raise InputError(f"{option} {text!r} must be a month as YYYY-MM, like 2026-03")
    if not FIRST_PERIOD <= text <= LAST_PERIOD:
        raise InputError(f"{option} {text!r} is outside the billing periods {FIRST_PERIOD} to {LAST_PERIOD}")
    return int(match.group(1)), int(match.group(2))


def check_period(text: str, option: str = "--period") -> str:
    parse_period(text, option)
    return text


def next_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def month_start_us(year: int, month: int, timezone: str) -> int:
    # datetime with a ZoneInfo resolves the local midnight to its real offset (fold=0);
    # midnight on the 1st is never inside a DST gap in any zone that bills.
    return to_us(datetime(year, month, 1, tzinfo=ZoneInfo(timezone)))


def period_bounds(period: str, timezone: str) -> tuple[int, int]:
    """[start, end) of `period` in `timezone`, as microseconds since the epoch."""
    year, month = parse_period(period)
    following = next_period(period)
    next_year, next_month = int(following[:4]), int(following[5:])
    return month_start_us(year, month, timezone), month_start_us(next_year, next_month, timezone)


def period_of(instant: datetime, timezone: str) -> str:
    local = instant.astimezone(ZoneInfo(timezone))
    return f"{local.year:04d}-{local.month:02d}"


def period_of_us(instant_us: int, timezone: str) -> str:
    return period_of(from_us(instant_us), timezone)
