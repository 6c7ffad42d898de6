"""The endpoint's front door: the Envoy configuration of its gateway, as plain dicts.

Pure functions, like privend.render: the Endpoint component mounts what they return
into the gateway pods, `privend export manifests` writes it to `gateway/`, and the
tests run the real Envoy binary on it.

Two files, because they change at different speeds:
- the bootstrap (`envoy.yaml`, a ConfigMap): listeners, limits, the engine cluster and
  the cold-start hold. It holds no key material and changes only with the spec.
- the key routes (`routes.yaml`, a Kubernetes Secret): one route per API key, matching
  the exact `Authorization: Bearer <key>` header, with that key's rate limit, and a last
  route that answers 401. Envoy reads it as a filesystem RDS source and reloads it when
  an entry is moved into its directory, which is how the kubelet updates a mounted
  Secret (an atomic rename of `..data`). Adding, revoking or rotating a key therefore
  changes neither the gateway's pods nor the engine's.

Authentication is route matching on the exact header value: a request whose header
matches no key's route falls through to the 401 route, so no request without a valid
key reaches the engine. Route matching was chosen over the RBAC filter because each key
needs its own rate-limit bucket and its own name on the request, which are route
properties; the WIP `api_key_auth` filter is not used.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address

# Where the gateway pod mounts its files; the bootstrap names them.
CONFIG_DIR = "/etc/envoy"
KEYS_DIR = "keys"  # relative to the pod's working directory, CONFIG_DIR, as in the exported bundle
ROUTES_FILE = "routes.yaml"
ROUTE_CONFIG_NAME = "api-keys"
ENGINE_CLUSTER = "engine"
ADMIN_CLUSTER = "admin"
HCM_STAT_PREFIX = "ingress"
# The header that tells the engine (and its logs) which key a request came with.
KEY_HEADER = "x-privend-api-key"
READY_PATH = "/gateway/ready"
# How long a client is told to wait after a cold start that outlasted the hold.
COLD_START_RETRY_AFTER_SECONDS = 30
UNAUTHENTICATED_ROUTE = "unauthenticated"
# KEDA reads this gauge (requests the gateway holds or forwards) to wake the engine from zero.
PENDING_REQUESTS_STAT = f"http.{HCM_STAT_PREFIX}.downstream_rq_active"
# How the gateway runs Envoy: no hot restart (one process per pod; it also needs shared memory the
# restricted pod does not get), access-log lines flushed within a second (the default waits ten).
ENVOY_ARGS = ["--disable-hot-restart", "--file-flush-interval-msec", "1000"]
ROUTES_PLACEHOLDER = "routes.yaml is mounted from the gateway's Kubernetes Secret; it is not exported\n"


@dataclass(frozen=True)
class GatewayLimits:
    """What the door enforces, from the endpoint spec."""

    cold_start_wait_seconds: int = 600
    max_request_body_bytes: int = 4 * 1024 * 1024
    max_request_headers_kib: int = 64
    idle_timeout_seconds: int = 300
    response_timeout_seconds: int = 600
    max_concurrent_requests: int = 1024
    # How often a held request tries the engine again during a cold start.
    retry_interval_ms: int = 1000

    @property
    def cold_start_retries(self) -> int:
        """Retries that add up to the hold: Envoy waits a random time up to the interval before each,
        half the interval on average, so the hold ends within a few percent of the wait."""
        return max(1, math.ceil(2 * self.cold_start_wait_seconds * 1000 / self.retry_interval_ms))


@dataclass(frozen=True)
class GatewayPorts:
    listener: int = 8080
    metrics: int = 9102
    admin: int = 9901


@dataclass(frozen=True)
class KeyRoute:
    """One API key as the gateway sees it: its name, its secret, its limit."""

    name: str
    secret: str
    rate_limit_per_minute: int | None = None

    def __repr__(self) -> str:  # never print a secret by accident
        return f"KeyRoute(name={self.name!r}, rate_limit_per_minute={self.rate_limit_per_minute!r})"


def fingerprint(secret: str) -> str:
    """What the registry keeps of a key: enough to recognise it, never enough to use it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def _cluster_type(host: str) -> str:
    try:
        ip_address(host)
    except ValueError:
        return "LOGICAL_DNS"  # the engine's ClusterIP Service: one name, one virtual address
    return "STATIC"


def _access_log(path: str) -> list[dict]:
    return [{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"json_format": {
                "time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                "status": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%", "key": "%ROUTE_NAME%",
                "duration_ms": "%DURATION%", "upstream_ms": "%RESPONSE_DURATION%",
                "bytes_in": "%BYTES_RECEIVED%", "bytes_out": "%BYTES_SENT%",
            }},
        },
    }]


def _local_reply_config() -> dict:
    """503 + Retry-After when the engine did not come up within the hold, or the door is full."""
    retry_after = [{"header": {"key": "retry-after", "value": str(COLD_START_RETRY_AFTER_SECONDS)},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    return {"mappers": [
        {"filter": {"response_flag_filter": {"flags": ["UF", "URX", "UH"]}},
         "status_code": 503, "headers_to_add": retry_after,
         "body": {"inline_string": "the endpoint is starting; retry later\n"}},
        {"filter": {"response_flag_filter": {"flags": ["UO"]}},
         "status_code": 503, "headers_to_add": retry_after,
         "body": {"inline_string": "the endpoint is at its concurrent-request limit; retry later\n"}},
    ]}


def _http_filters(limits: GatewayLimits) -> list[dict]:
    return [
        # Answers the load balancer's and kubelet's probes itself: the door is up even while the engine is at zero.
        {"name": "envoy.filters.http.health_check", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": READY_PATH}}],
        }},
        # Off here; each key's route turns it on with that key's own bucket.
        {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "key_rate_limit",
        }},
        # Whole bodies up to the limit: 413 past it, and a held request can be retried once the engine is up.
        {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": limits.max_request_body_bytes,
        }},
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        }},
    ]


def _ingress_listener(limits: GatewayLimits, ports: GatewayPorts, listen_address: str, keys_dir: str,
                      access_log_path: str) -> dict:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": HCM_STAT_PREFIX,
        "codec_type": "AUTO",
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "max_request_headers_kb": limits.max_request_headers_kib,
        "request_headers_timeout": "10s",
        # A held request sends nothing while it waits: the stream may stay quiet for the whole hold.
        "stream_idle_timeout": _seconds(limits.cold_start_wait_seconds + limits.idle_timeout_seconds),
        "common_http_protocol_options": {"idle_timeout": _seconds(limits.idle_timeout_seconds),
                                         "headers_with_underscores_action": "REJECT_REQUEST"},
        "access_log": _access_log(access_log_path),
        "local_reply_config": _local_reply_config(),
        "rds": {
            "route_config_name": ROUTE_CONFIG_NAME,
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {"path": f"{keys_dir}/{ROUTES_FILE}", "watched_directory": {"path": keys_dir}},
            },
        },
        "http_filters": _http_filters(limits),
    }
    return {
        "name": "ingress",
        "address": _address(listen_address, ports.listener),
        "per_connection_buffer_limit_bytes": 1024 * 1024,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


def _metrics_listener(ports: GatewayPorts, listen_address: str) -> dict:
    """Read-only statistics for KEDA: only GET /stats reaches the admin interface, which listens on loopback."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "metrics",
        "route_config": {"name": "metrics", "virtual_hosts": [{
            "name": "metrics", "domains": ["*"],
            "routes": [
                {"match": {"path": "/stats", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
                 "route": {"cluster": ADMIN_CLUSTER}},
                {"match": {"path": "/stats/prometheus",
                           "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
                 "route": {"cluster": ADMIN_CLUSTER}},
                {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
            ],
        }]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "name": "metrics",
        "address": _address(listen_address, ports.metrics),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


def _cluster(name: str, host: str, port: int, limits: GatewayLimits | None = None) -> dict:
    cluster = {
        "name": name,
        "type": _cluster_type(host),
        "connect_timeout": "2s",
        "dns_lookup_family": "V4_ONLY",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _address(host, port)}}]}]},
    }
    if limits is not None:
        n = limits.max_concurrent_requests
        # The door's concurrent-request cap; held requests are retries, so retries need the same room.
        cluster["circuit_breakers"] = {"thresholds": [{
            "priority": "DEFAULT", "max_connections": n, "max_pending_requests": n, "max_requests": n,
            "max_retries": n,
        }]}
    return cluster


def bootstrap(limits: GatewayLimits, engine_host: str, engine_port: int, *, ports: GatewayPorts = GatewayPorts(),
              listen_address: str = "0.0.0.0", keys_dir: str = KEYS_DIR, node: str = "gateway",
              access_log_path: str = "/dev/stdout") -> dict:
    """The gateway's `envoy.yaml`: no key material, only where the keys are mounted."""
    return {
        # A file-based route source needs the node named.
        "node": {"id": node, "cluster": node},
        "admin": {"address": _address("127.0.0.1", ports.admin)},
        "static_resources": {
            "listeners": [_ingress_listener(limits, ports, listen_address, keys_dir, access_log_path),
                          _metrics_listener(ports, listen_address)],
            "clusters": [_cluster(ENGINE_CLUSTER, engine_host, engine_port, limits),
                         _cluster(ADMIN_CLUSTER, "127.0.0.1", ports.admin)],
        },
    }


def token_bucket(rate_limit_per_minute: int) -> tuple[dict, int]:
    """A bucket of the key's per-minute limit, refilled evenly and never faster; and its Retry-After."""
    # Envoy refills at most every 50 ms: above 1,200 a minute a fill adds more than one token.
    tokens_per_fill = max(1, math.ceil(rate_limit_per_minute * 0.05 / 60))
    interval_ms = math.ceil(tokens_per_fill * 60_000 / rate_limit_per_minute)
    bucket = {"max_tokens": rate_limit_per_minute, "tokens_per_fill": tokens_per_fill,
              "fill_interval": f"{interval_ms / 1000:g}s"}
    return bucket, max(1, math.ceil(interval_ms / 1000))


def _engine_route(limits: GatewayLimits) -> dict:
    interval = f"{limits.retry_interval_ms / 1000:g}s"
    return {
        "cluster": ENGINE_CLUSTER,
        # The hold plus the answer: a long generation is not cut short by the cold-start budget.
        "timeout": _seconds(limits.cold_start_wait_seconds + limits.response_timeout_seconds),
        "idle_timeout": _seconds(limits.cold_start_wait_seconds + limits.idle_timeout_seconds),
        # With no ready replica the engine Service refuses connections; Envoy tries again every
        # interval until the hold is spent. Only failures before the request reached the engine
        # are retried, so a generation never runs twice.
        "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset-before-request",
            "num_retries": limits.cold_start_retries,
            "retry_back_off": {"base_interval": interval, "max_interval": interval},
        },
    }


def _key_route(key: KeyRoute, limits: GatewayLimits) -> dict:
    route = {
        "name": key.name,
        "match": {"prefix": "/", "headers": [{"name": "authorization",
                                              "string_match": {"exact": f"Bearer {key.secret}"}}]},
        "route": _engine_route(limits),
        # The engine learns which key, never the key itself.
        "request_headers_to_remove": ["authorization"],
        "request_headers_to_add": [{"header": {"key": KEY_HEADER, "value": key.name},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    }
    if key.rate_limit_per_minute:
        bucket, retry_after = token_bucket(key.rate_limit_per_minute)
        enabled = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
        route["typed_per_filter_config"] = {"envoy.filters.http.local_ratelimit": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": f"key_{key.name}",
            "token_bucket": bucket,
            "filter_enabled": {"runtime_key": "key_rate_limit_enabled", **enabled},
            "filter_enforced": {"runtime_key": "key_rate_limit_enforced", **enabled},
            "response_headers_to_add": [{"header": {"key": "retry-after", "value": str(retry_after)},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        }}
    return route


def key_routes(keys: Sequence[KeyRoute], limits: GatewayLimits, version: str = "1") -> dict:
    """The gateway's `routes.yaml` (a discovery response Envoy reads from its file): holds key material."""
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ValueError("API key names must be unique")
    routes = [_key_route(k, limits) for k in sorted(keys, key=lambda k: k.name)]
    routes.append({
        "name": UNAUTHENTICATED_ROUTE, "match": {"prefix": "/"},
        "direct_response": {"status": 401, "body": {"inline_string": "a valid API key is required\n"}},
        "response_headers_to_add": [{"header": {"key": "www-authenticate", "value": "Bearer"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    })
    return {
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": ROUTE_CONFIG_NAME,
            "virtual_hosts": [{"name": "endpoint", "domains": ["*"], "routes": routes}],
        }],
    }
