"""The CloudWatch agent configuration behind metering: scrape the engines, publish per endpoint.

The metering collector (components/metering.py, our own CloudWatch agent Deployments) scrapes the Prometheus
metrics of pods labelled `app.kubernetes.io/managed-by=privend` in endpoint
namespaces (`ep-*`), takes the dimensions Environment, Tenant and Endpoint from
the pods' `privend.io/*` labels, renames the engines' metrics (TGI and vLLM
names differ) to one vocabulary and publishes:

- `PrivateEndpoint/Usage`: `InputTokens`, `OutputTokens` (what `usage pull` reads);
- `PrivateEndpoint/Engine`: `QueueSize`, `RequestFailures` (what the endpoint alarms watch).

Rendered from `privend/templates/cloudwatch_agent.json.j2`; `render_agent_config`
is pure, so tests check the rendered configuration directly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2

from privend.billing.pull import NAMESPACE as USAGE_NAMESPACE

ENGINE_NAMESPACE = "PrivateEndpoint/Engine"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Engine metric (Prometheus name) -> published name. Counters: the agent publishes their deltas.
RENAMES: dict[str, str] = {
    "tgi_request_input_length_sum": "InputTokens",
    "vllm:prompt_tokens_total": "InputTokens",
    "tgi_request_generated_tokens_sum": "OutputTokens",
    "vllm:generation_tokens_total": "OutputTokens",
    "tgi_queue_size": "QueueSize",
    "vllm:num_requests_waiting": "QueueSize",
    "tgi_request_failure": "RequestFailures",
}
POD_LABELS = (
    ("privend_io_environment", "Environment"),
    ("privend_io_tenant", "Tenant"),
    ("privend_io_endpoint", "Endpoint"),
)
AGENTS = (
    {"name": "usage", "namespace": USAGE_NAMESPACE, "metrics": ("InputTokens", "OutputTokens")},
    {"name": "engine", "namespace": ENGINE_NAMESPACE, "metrics": ("QueueSize", "RequestFailures")},
)


def render_agent_config(
    env: str,
    *,
    cluster_name: str,
    region: str,
    namespace_prefix: str = "ep-",
    port_name: str = "http",
    scrape_interval: str = "60s",
    prometheus_config_path: str = "/etc/prometheusconfig/prometheus.yaml",
) -> dict[str, Any]:
    """{"prometheus": scrape config, "agents": {"usage": agent config, "engine": agent config}}."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     autoescape=False, keep_trailing_newline=True)
    renames = sorted(RENAMES.items())
    kept = sorted({target for _, target in renames})
    text = environment.get_template("cloudwatch_agent.json.j2").render(
        env=env,
        cluster_name=cluster_name,
        region=region,
        namespace_regex=f"{_label_prefix(namespace_prefix)}.*",
        port_name=port_name,
        scrape_interval=scrape_interval,
        prometheus_config_path=prometheus_config_path,
        pod_labels=POD_LABELS,
        renames=[(f"^{re.escape(source)}$", target) for source, target in renames],
        kept_regex="^(" + "|".join(kept) + ")$",
        log_group_prefix=f"/aws/containerinsights/{cluster_name}/privend",
        agents=[{"name": agent["name"], "namespace": agent["namespace"],
                 "selectors": [f"^{metric}$" for metric in agent["metrics"]],
                 "units": {metric: "Count" for metric in agent["metrics"]}} for agent in AGENTS],
    )
    return json.loads(text)


def _label_prefix(prefix: str) -> str:
    # Namespace names are DNS labels: a prefix of [a-z0-9-] needs no regex escaping.
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", prefix):
        raise ValueError(f"namespace prefix {prefix!r} must be lower-case letters, digits and '-'")
    return prefix
