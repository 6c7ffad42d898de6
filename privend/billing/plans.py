"""The plans catalog (`stacks/plans.yaml`, or the file `PRIVEND_PLANS` names) and its loader.

A plan is what a subscription segment refers to by name: a monthly fee, a token
quota bundled with it, the overage rate beyond the quota and the overage
protection (`max_overage`), with a `soft` or `hard` cap. Amounts are Decimal;
YAML floats are refused, since `0.1` as a binary float is not a price anyone set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from privend.config import stacks_dir
from privend.errors import InputError
from privend.files import read_text
from privend.suggest import did_you_mean

PLANS_ENV = "PRIVEND_PLANS"


def _decimal_text(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("write amounts as quoted decimal strings, like \"49.00\"")
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f"{value!r} is not a decimal amount") from None
        if not parsed.is_finite():
            raise ValueError(f"{value!r} is not a finite amount")
        return parsed
    return value


Amount = Annotated[Decimal, BeforeValidator(_decimal_text), Field(ge=0)]
PlanName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class Plan(BaseModel):
    """One subscription plan; every amount is per month, in `currency`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: PlanName
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    monthly_fee: Amount
    included_tokens: Annotated[int, Field(ge=0, strict=True)]
    overage_per_million_tokens: Amount
    max_overage: Amount | None
    cap: Literal["soft", "hard"]

    def terms(self) -> dict[str, Any]:
        """The plan as JSON data, decimals as strings: what a finalized invoice keeps as its basis."""
        return self.model_dump(mode="json")


class PlansFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plans: list[Plan] = Field(min_length=1)


def plans_path() -> Path:
    """The default catalog: `plans.yaml` next to the project's stack files (`PRIVEND_PLANS` overrides it)."""
    return stacks_dir() / "plans.yaml"


def load_plans(path: str | os.PathLike[str] | None = None) -> dict[str, Plan]:
    """The catalog at `path` (default `plans_path()`) as {name: Plan}; InputError with file, key and reason."""
    resolved = Path(path) if path is not None else plans_path()
    try:
        stat = resolved.stat()
    except OSError:
        raise InputError(f"{resolved}: plans catalog not found (set {PLANS_ENV} to its path)") from None
    return dict(_load(str(resolved), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[str, Plan], ...]:
    # Keyed on mtime and size so an edited file is read again within one process (tests do that).
    try:
        document = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: plans: expected a mapping with a `plans:` list")
    try:
        parsed = PlansFile.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = _location(tuple(error["loc"]))
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        raise InputError(f"{path}: {key}: {reason}") from None
    seen: dict[str, int] = {}
    for index, plan in enumerate(parsed.plans):
        if plan.name in seen:
            raise InputError(f"{path}: plans[{index}].name: plan {plan.name!r} is defined twice "
                             f"(first at plans[{seen[plan.name]}])")
        seen[plan.name] = index
    return tuple((plan.name, plan) for plan in parsed.plans)


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else (("." if text else "") + str(item))
    return text


def get_plan(name: str, plans: Mapping[str, Plan] | None = None) -> Plan:
    catalog = load_plans() if plans is None else plans
    try:
        return catalog[name]
    except KeyError:
        raise InputError(f"unknown plan {name!r} (plans: {', '.join(sorted(catalog))})"
                         f"{did_you_mean(name, catalog)}") from None


def validate_plan_name(name: str, plans: Mapping[str, Plan] | None = None) -> str:
    """Refuse a plan the catalog does not know, listing the ones it does (for `endpoint create/update --plan`)."""
    get_plan(name, plans)
    return name
