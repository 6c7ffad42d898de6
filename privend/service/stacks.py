"""Stack use cases: offline plans of an environment, its guardrail verdict, and manifest export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from privend.manifests import placeholders_in, write_gateway_config, write_manifests
from privend.service.app import App
from privend.spec import EndpointSpec
from privend.values import EndpointStatus


@dataclass(frozen=True)
class PlanReport:
    env: str
    plans: list  # StackPlan, platform first
    violations: list  # privend.policy.Violation, the blocking (mandatory) ones first
    blocking: list  # the mandatory violations: the plan must not be applied
    guardrails: int = 0  # how many rules were evaluated

    @property
    def verdict(self) -> str:
        """One line: how many guardrails ran and what they found."""
        found = len(self.violations)
        if not found:
            return f"{self.guardrails} guardrails, 0 violations: the plan passes"
        mandatory = len(self.blocking)
        return (f"{self.guardrails} guardrails, {found} violation(s) ({mandatory} mandatory"
                f"{': the plan must not be applied' if mandatory else ', advisory only'})")


def registered_specs(app: App, env: str, endpoint: str | None = None) -> list[EndpointSpec]:
    """The specs of `env`'s endpoints (only `endpoint`'s when given), leaving out those being deleted."""
    with app.registry() as registry:
        if endpoint:
            return [EndpointSpec.from_record(registry.get_endpoint(env, endpoint))]
        return [EndpointSpec.from_record(e) for e in registry.list_endpoints(env)
                if e.status != EndpointStatus.DELETING]


def plan_environment(app: App, env: str, endpoint: str | None = None) -> PlanReport:
    """The platform stack and every endpoint stack of `env` (only `endpoint`'s when given), with the guardrails."""
    # The offline engine imports the Pulumi SDKs: only commands that plan pay for them.
    from privend.plan import plan_environment as plan_stacks
    from privend.policy import evaluate, mandatory, rules_checked

    cfg = app.environment(env)
    plans = plan_stacks(cfg, registered_specs(app, env, endpoint), platform=endpoint is None)
    violations = evaluate(plans, cfg, stacks_dir=app.settings.stacks_dir)
    return PlanReport(env, plans, violations, mandatory(violations), rules_checked())


@dataclass(frozen=True)
class ExportedManifests:
    manifests: list[Path]
    gateway: list[Path]  # gateway/envoy.yaml first, then the placeholders of what it mounts
    with_placeholders: list[Path]  # manifests that still hold offline placeholders (marked at their top)


def export_manifests(app: App, env: str, endpoint: str, out_dir: Path) -> ExportedManifests:
    """Write the endpoint's Kubernetes objects to `out_dir`, one YAML file each (Secrets without values),
    and its gateway's Envoy config under `gateway/`."""
    cfg = app.environment(env)
    [spec] = registered_specs(app, env, endpoint)
    written = write_manifests(spec, cfg, out_dir)
    return ExportedManifests(written, write_gateway_config(spec, cfg, out_dir),
                             [p for p in written if placeholders_in(p.read_text(encoding="utf-8"))])
