"""The rendered CloudWatch agent configuration: what it scrapes, how it names metrics and dimensions."""

from __future__ import annotations

import re

import pytest

from privend.billing.agent_config import render_agent_config
from privend.billing.pull import METRICS, NAMESPACE
from privend.render import ENGINE_NAMESPACE, USAGE_NAMESPACE


@pytest.fixture(scope="module")
def config() -> dict:
    return render_agent_config("prod", cluster_name="privend-prod", region="eu-west-1")


def relabel(config: dict) -> list[dict]:
    return config["prometheus"]["scrape_configs"][0]["relabel_configs"]


def renamed(config: dict, metric: str) -> str | None:
    """What the scrape's metric_relabel_configs turn `metric` into (None: dropped)."""
    rules = config["prometheus"]["scrape_configs"][0]["metric_relabel_configs"]
    name = metric
    for rule in rules:
        if rule["action"] == "replace" and re.fullmatch(rule["regex"], name):
            name = rule["replacement"]
        elif rule["action"] == "keep" and not re.fullmatch(rule["regex"], name):
            return None
    return name


def test_scrapes_only_privend_pods_of_this_env_in_endpoint_namespaces(config: dict) -> None:
    keeps = {tuple(r["source_labels"]): r["regex"] for r in relabel(config) if r["action"] == "keep"}

    assert keeps == {
        ("__meta_kubernetes_namespace",): "ep-.*",
        ("__meta_kubernetes_pod_label_app_kubernetes_io_managed_by",): "privend",
        ("__meta_kubernetes_pod_label_privend_io_environment",): "prod",
        ("__meta_kubernetes_pod_container_port_name",): "http",
    }
    assert config["prometheus"]["scrape_configs"][0]["kubernetes_sd_configs"] == [{"role": "pod"}]


def test_dimensions_come_from_the_pod_labels(config: dict) -> None:
    targets = {r["target_label"]: r["source_labels"][0] for r in relabel(config) if r["action"] == "replace"}

    assert targets["Environment"] == "__meta_kubernetes_pod_label_privend_io_environment"
    assert targets["Tenant"] == "__meta_kubernetes_pod_label_privend_io_tenant"
    assert targets["Endpoint"] == "__meta_kubernetes_pod_label_privend_io_endpoint"


@pytest.mark.parametrize(
    ("engine_metric", "published"),
    [
        ("tgi_request_input_length_sum", "InputTokens"),
        ("tgi_request_generated_tokens_sum", "OutputTokens"),
        ("vllm:prompt_tokens_total", "InputTokens"),
        ("vllm:generation_tokens_total", "OutputTokens"),
        ("tgi_queue_size", "QueueSize"),
        ("tgi_request_failure", "RequestFailures"),
        ("tgi_request_input_length_count", None),
        ("tgi_request_input_length_sum_extra", None),
        ("process_cpu_seconds_total", None),
    ],
)
def test_engine_metrics_are_renamed_to_the_published_names_and_others_dropped(
    config: dict, engine_metric: str, published: str | None
) -> None:
    assert renamed(config, engine_metric) == published


def test_token_counters_go_to_the_usage_namespace_that_pull_reads(config: dict) -> None:
    usage = config["agents"]["usage"]["logs"]["metrics_collected"]["prometheus"]
    declaration = usage["emf_processor"]["metric_declaration"][0]

    assert usage["emf_processor"]["metric_namespace"] == NAMESPACE == USAGE_NAMESPACE
    assert declaration["dimensions"] == [["Environment", "Tenant", "Endpoint"]]
    assert [s.strip("^$") for s in declaration["metric_selectors"]] == list(METRICS)
    assert usage["cluster_name"] == "privend-prod"
    assert config["agents"]["usage"]["agent"]["region"] == "eu-west-1"


def test_engine_metrics_go_to_the_namespace_the_alarms_watch(config: dict) -> None:
    engine = config["agents"]["engine"]["logs"]["metrics_collected"]["prometheus"]["emf_processor"]

    assert engine["metric_namespace"] == ENGINE_NAMESPACE
    assert engine["metric_declaration"][0]["metric_selectors"] == ["^QueueSize$", "^RequestFailures$"]
    assert engine["metric_declaration"][0]["dimensions"] == [["Environment", "Tenant", "Endpoint"]]


def test_odd_names_are_json_escaped_not_injected() -> None:
    config = render_agent_config('dev"x', cluster_name='c"}', region="us-east-1")

    assert config["agents"]["usage"]["logs"]["metrics_collected"]["prometheus"]["cluster_name"] == 'c"}'
    assert config["agents"]["engine"]["logs"]["metrics_collected"]["prometheus"]["log_group_name"] == (
        '/aws/containerinsights/c"}/privend/engine')
    keeps = {tuple(r["source_labels"]): r["regex"] for r in relabel(config) if r["action"] == "keep"}
    assert keeps[("__meta_kubernetes_pod_label_privend_io_environment",)] == 'dev"x'
