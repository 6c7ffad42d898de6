"""Traffic per endpoint, in fixed time steps: what the simulator replays.

Three sources, one shape (`Traffic`: per endpoint, prompt and generated tokens
arriving in each step of a window):

- `read_trace_dir`: one CSV per endpoint, `<endpoint>.csv`, in the Azure LLM
  inference trace format `TIMESTAMP,ContextTokens,GeneratedTokens` (ISO 8601;
  a timestamp without an offset is UTC). Each request lands in the step of its
  arrival.
- `from_hourly_totals`: the usage ledger's hourly token sums (input plus output)
  per endpoint, as the service layer reads them from the registry for a billing
  period. The ledger keeps no request times inside an hour, so two assumptions,
  both documented in the README: tokens are split into prompt and generated at
  the real trace's ratio (TRACE_GENERATED_SHARE), and an hour's tokens spread
  over its minutes with the real trace's minute-to-minute shape
  (TRACE_MINUTE_SHAPE, repeated and normalised to the hour's sum) rather than
  evenly: an even spread would hide every burst the autoscaler must follow.
- `synthetic`: a seeded generator. Per endpoint a peak rate, the UTC offset of
  its users, a diurnal cycle (peak at 14:00 local, trough at 04:00 local at
  `trough` of peak, cosine between), weekends at `weekend` of weekdays, and
  minute-level burstiness drawn from the real trace's per-minute shape (a
  random rotation of it per endpoint and hour, so bursts do not line up across
  endpoints).

The real trace is one hour of one Azure code-completion service (2023-11-16,
CC-BY 4.0, Patel et al., ISCA 2024; tests/data/README.md): its per-minute
request counts are TRACE_MINUTE_SHAPE below.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from privend.errors import InputError

# Requests per minute of the real trace's 58 minutes (from 18:17:03 UTC), in order.
TRACE_MINUTE_REQUESTS = (
    63, 0, 0, 531, 187, 130, 15, 42, 38, 476, 421, 63, 0, 0, 632, 299, 0, 20, 396, 315, 116, 78, 306,
    447, 252, 34, 128, 111, 406, 234, 118, 169, 130, 306, 158, 0, 339, 55, 285, 191, 0, 28, 205, 245, 99, 0,
    0, 32, 0, 0, 0, 97, 212, 22, 32, 113, 47, 196,
)
_SHAPE = np.array(TRACE_MINUTE_REQUESTS, dtype=np.float64)
TRACE_MINUTE_SHAPE = _SHAPE / _SHAPE.mean()  # mean 1: a multiplier on the minute's expected rate
# Generated tokens over all tokens in the real trace (245,896 of 18,305,870).
TRACE_GENERATED_SHARE = 245_896 / (18_059_974 + 245_896)


@dataclass(frozen=True)
class Traffic:
    """Prompt and generated tokens per endpoint per step, from `start`, `step_seconds` apart."""

    start: datetime
    step_seconds: int
    steps: int
    context_tokens: Mapping[str, np.ndarray]
    generated_tokens: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise InputError("traffic start must be timezone-aware")
        if self.step_seconds < 1:
            raise InputError(f"step must be at least 1 second, got {self.step_seconds}")

    @property
    def endpoints(self) -> list[str]:
        return sorted(self.context_tokens)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.step_seconds * self.steps)

    def scaled(self, factor: float) -> Traffic:
        """The same traffic with every step's tokens times `factor`."""
        return Traffic(self.start, self.step_seconds, self.steps,
                       {e: v * factor for e, v in self.context_tokens.items()},
                       {e: v * factor for e, v in self.generated_tokens.items()})


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp; UTC when it has no offset. Fractions beyond microseconds are cut."""
    value = text.strip()
    date_part, sep, rest = value.replace("T", " ").partition(" ")
    if sep and "." in rest:
        clock, _, tail = rest.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        offset = tail[len(digits):]
        value = f"{date_part} {clock}.{digits[:6].ljust(6, '0')}{offset}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{text!r} is not an ISO 8601 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TraceRequests:
    """One endpoint's requests from a trace file, as arrival seconds since the epoch and token counts."""

    endpoint: str
    arrivals: np.ndarray
    context_tokens: np.ndarray
    generated_tokens: np.ndarray


def read_trace_file(path: Path, endpoint: str | None = None) -> TraceRequests:
    name = endpoint or path.stem
    arrivals, context, generated = [], [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        wanted = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
        if reader.fieldnames is None or not wanted <= set(reader.fieldnames):
            raise InputError(f"{path}: expected the columns TIMESTAMP,ContextTokens,GeneratedTokens, "
                             f"got {','.join(reader.fieldnames or [])}")
        for line, row in enumerate(reader, start=2):
            try:
                arrivals.append(parse_time(row["TIMESTAMP"]).timestamp())
                context.append(int(row["ContextTokens"]))
                generated.append(int(row["GeneratedTokens"]))
            except (InputError, ValueError, TypeError):
                raise InputError(f"{path}:{line}: bad row {row!r}") from None
    return TraceRequests(name, np.array(arrivals), np.array(context, dtype=np.float64),
                         np.array(generated, dtype=np.float64))


def read_trace_dir(directory: Path, step_seconds: int, start: datetime | None = None,
                   end: datetime | None = None) -> Traffic:
    """Every `<endpoint>.csv` of `directory`, in steps from `start` (default: the first request) to `end`."""
    if not directory.is_dir():
        raise InputError(f"{directory}: no such traffic directory")
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise InputError(f"{directory}: no <endpoint>.csv trace files")
    traces = [read_trace_file(f) for f in files]
    first = min((t.arrivals.min() for t in traces if len(t.arrivals)), default=None)
    last = max((t.arrivals.max() for t in traces if len(t.arrivals)), default=None)
    if start is None:
        if first is None:
            raise InputError(f"{directory}: the traces hold no requests; give --start and --end")
        start = datetime.fromtimestamp(math.floor(first / step_seconds) * step_seconds, UTC)
    if end is None:
        end = datetime.fromtimestamp((last if last is not None else start.timestamp()) + 1, UTC)
    steps = _steps(start, end, step_seconds)
    context, generated = {}, {}
    for trace in traces:
        index = np.floor((trace.arrivals - start.timestamp()) / step_seconds).astype(np.int64)
        inside = (index >= 0) & (index < steps)
        context[trace.endpoint] = np.bincount(index[inside], trace.context_tokens[inside], minlength=steps)
        generated[trace.endpoint] = np.bincount(index[inside], trace.generated_tokens[inside], minlength=steps)
    return Traffic(start, step_seconds, steps, context, generated)


def _steps(start: datetime, end: datetime, step_seconds: int) -> int:
    if end <= start:
        raise InputError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return math.ceil((end - start).total_seconds() / step_seconds)


def _minute_weights(minutes: int, rotation: int) -> np.ndarray:
    shape = np.roll(np.resize(TRACE_MINUTE_SHAPE, minutes), rotation)
    return shape / shape.sum()


def from_hourly_totals(totals: Mapping[str, Sequence[int]], start: datetime, step_seconds: int) -> Traffic:
    """Hourly token sums per endpoint (hour i from `start`) as steps, under the two assumptions above."""
    if step_seconds > 3600 or 3600 % step_seconds:
        raise InputError(f"with ledger traffic the step must divide an hour, got {step_seconds} s")
    hours = max((len(v) for v in totals.values()), default=0)
    per_hour = 3600 // step_seconds
    steps = hours * per_hour
    # Minute shape, then summed into steps (a step longer than a minute) or split evenly (shorter).
    minutes = _minute_weights(60, 0)
    if step_seconds >= 60:
        weights = minutes.reshape(per_hour, step_seconds // 60).sum(axis=1)
    else:
        weights = np.repeat(minutes, 60 // step_seconds) / (60 // step_seconds)
    context, generated = {}, {}
    for endpoint, hourly in totals.items():
        sums = np.zeros(hours)
        sums[: len(hourly)] = np.asarray(hourly, dtype=np.float64)
        spread = np.outer(sums, weights).ravel()
        generated[endpoint] = spread * TRACE_GENERATED_SHARE
        context[endpoint] = spread - generated[endpoint]
    return Traffic(start, step_seconds, steps, context, generated)


@dataclass(frozen=True)
class TrafficProfile:
    """What the generator needs to know of one endpoint's users."""

    endpoint: str
    peak_tokens_per_second: float  # prompt plus generated, at the weekday peak hour, before bursts
    utc_offset_hours: float = 0.0
    trough: float = 0.3  # the 04:00 local rate over the 14:00 local one
    weekend: float = 0.6  # a weekend day over a weekday
    generated_share: float = TRACE_GENERATED_SHARE

    def __post_init__(self) -> None:
        if self.peak_tokens_per_second < 0 or not 0 <= self.trough <= 1 or not 0 <= self.weekend <= 1:
            raise InputError(f"traffic profile of {self.endpoint!r}: peak must be >= 0, trough and weekend in [0, 1]")


def synthetic(profiles: Iterable[TrafficProfile], seed: int, start: datetime, end: datetime,
              step_seconds: int) -> Traffic:
    """Seeded traffic for `profiles`: diurnal, weekly and minute-level shape (module docstring)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InputError("synthetic traffic needs timezone-aware start and end")
    steps = _steps(start, end, step_seconds)
    rng = np.random.default_rng(seed)
    t = start.timestamp() + step_seconds * (np.arange(steps) + 0.5)
    minute_index = np.floor(t / 60).astype(np.int64)
    hour_index = minute_index // 60
    context, generated = {}, {}
    shape = TRACE_MINUTE_SHAPE
    for profile in profiles:
        local = t + profile.utc_offset_hours * 3600
        local_hour = (local % 86400) / 3600
        # Cosine from the trough at 04:00 to the peak at 14:00 and back (10 h up, 14 h down).
        rising = (local_hour >= 4) & (local_hour < 14)
        phase = np.where(rising, (local_hour - 4) / 10, 1 + ((local_hour - 14) % 24) / 14)
        diurnal = profile.trough + (1 - profile.trough) * (1 - np.cos(np.pi * phase)) / 2
        weekday = ((local // 86400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        weekly = np.where(weekday >= 5, profile.weekend, 1.0)
        # Each hour of this endpoint takes the trace's minute shape from a random starting minute.
        hours, inverse = np.unique(hour_index, return_inverse=True)
        rotation = rng.integers(0, len(shape), size=len(hours))
        burst = shape[(minute_index % 60 + rotation[inverse]) % len(shape)]
        rate = profile.peak_tokens_per_second * diurnal * weekly * burst
        tokens = rate * step_seconds
        generated[profile.endpoint] = tokens * profile.generated_share
        context[profile.endpoint] = tokens - generated[profile.endpoint]
    return Traffic(start, step_seconds, steps, context, generated)


def for_endpoints(traffic: Traffic, endpoints: Sequence[str]) -> Traffic:
    """`traffic` restricted to `endpoints`, with no traffic for those it lacks (an endpoint nobody called)."""
    zero = np.zeros(traffic.steps)
    return Traffic(traffic.start, traffic.step_seconds, traffic.steps,
                   {e: traffic.context_tokens.get(e, zero) for e in endpoints},
                   {e: traffic.generated_tokens.get(e, zero) for e in endpoints})
