"""The gateway's Envoy configuration, run on the real Envoy binary on loopback."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import yaml

from privend import gateway
from privend.gateway import GatewayLimits, KeyRoute
from tests.gateway_support import Gateway, Upstream, envoy_binary

ALICE = KeyRoute("alice", "pe-alice-7f3c9a1d5e2b8f40a6c1d3e5f7a9b0c2", rate_limit_per_minute=None)
BOB = KeyRoute("bob", "pe-bob-2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e", rate_limit_per_minute=None)
# Tests need a short hold; the spec's default is ten minutes.
FAST = GatewayLimits(cold_start_wait_seconds=3, retry_interval_ms=100, max_request_body_bytes=64 * 1024)


@pytest.fixture
def upstream():
    engine = Upstream().start()
    yield engine
    engine.stop()


def _gateway(tmp_path, upstream, keys, limits=FAST):
    return Gateway(tmp_path, limits, upstream.port, keys)


def test_rendered_bootstrap_passes_envoy_validate(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / gateway.ROUTES_FILE).write_text(yaml.safe_dump(gateway.key_routes([], GatewayLimits())))
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(
        gateway.bootstrap(GatewayLimits(), "engine.ep-chat.svc.cluster.local", 80, keys_dir="keys")))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", "envoy.yaml", "--disable-hot-restart"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "configuration 'envoy.yaml' OK" in result.stdout + result.stderr


def test_rendered_key_routes_pass_envoy_validate_as_a_route_configuration(tmp_path):
    # `validate` does not read the file-based route source, so check the key routes inline.
    keys = [ALICE, KeyRoute("limited", "pe-limited-1", rate_limit_per_minute=600)]
    config = gateway.bootstrap(GatewayLimits(), "127.0.0.1", 8080, keys_dir="keys")
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route_config = gateway.key_routes(keys, GatewayLimits())["resources"][0]
    del hcm["rds"]
    hcm["route_config"] = {k: v for k, v in route_config.items() if k != "@type"}
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", "envoy.yaml", "--disable-hot-restart"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_bootstrap_holds_no_key_material():
    text = yaml.safe_dump(gateway.bootstrap(GatewayLimits(), "engine", 80))
    assert "Bearer" not in text and ALICE.secret not in text


def test_key_route_repr_never_shows_the_secret():
    assert ALICE.secret not in repr(ALICE)


def test_duplicate_key_names_are_refused():
    with pytest.raises(ValueError, match="unique"):
        gateway.key_routes([ALICE, KeyRoute("alice", "other")], GatewayLimits())


@pytest.mark.parametrize("per_minute", [1, 7, 60, 61, 600, 100_000])
def test_token_bucket_allows_the_per_minute_limit_and_refills_at_that_rate(per_minute):
    bucket, retry_after = gateway.token_bucket(per_minute)
    assert bucket["max_tokens"] == per_minute
    interval = float(bucket["fill_interval"].removesuffix("s"))
    assert interval >= 0.05  # Envoy's minimum fill interval
    refill_per_minute = bucket["tokens_per_fill"] * 60 / interval
    assert per_minute * 0.98 <= refill_per_minute <= per_minute
    assert retry_after >= 1


def test_request_without_a_key_is_refused_with_401(tmp_path, upstream):
    with _gateway(tmp_path, upstream, [ALICE]) as gw:
        status, headers, _ = gw.request()
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert upstream.seen == []


def test_request_with_a_wrong_key_is_refused_with_401(tmp_path, upstream):
    with _gateway(tmp_path, upstream, [ALICE]) as gw:
        assert gw.request(key="pe-not-a-key")[0] == 401
        assert gw.request(key=ALICE.secret + "x")[0] == 401
        assert gw.request(headers={"authorization": ALICE.secret})[0] == 401  # no Bearer scheme
    assert upstream.seen == []


def test_each_valid_key_reaches_the_engine_by_name_and_without_its_secret(tmp_path, upstream):
    with _gateway(tmp_path, upstream, [ALICE, BOB]) as gw:
        for key in (ALICE, BOB):
            status, _, body = gw.request(key=key.secret, headers={gateway.KEY_HEADER: "mallory"})
            assert status == 200
            assert json.loads(body)["object"] == "chat.completion"
        logged = [entry["key"] for entry in gw.logged(2)]
    assert [s.headers[gateway.KEY_HEADER] for s in upstream.seen] == ["alice", "bob"]
    assert all("authorization" not in s.headers for s in upstream.seen)
    assert logged == ["alice", "bob"]


def test_gateway_readiness_answers_without_the_engine(tmp_path):
    absent = Upstream()  # never started
    with Gateway(tmp_path, FAST, absent.port, [ALICE]) as gw:
        assert gw.request("GET", gateway.READY_PATH)[0] == 200


def test_revoked_key_is_refused_after_the_reload_and_a_new_key_accepted_without_restarts(tmp_path, upstream):
    carol = KeyRoute("carol", "pe-carol-0d2f4b6a8c1e3a5c7e9f0b2d4f6a8c1e")
    with _gateway(tmp_path, upstream, [ALICE, BOB]) as gw:
        pid = gw.pid
        assert gw.request(key=BOB.secret)[0] == 200
        delay = gw.update_keys([ALICE, carol], version="2")
        assert delay < 5
        assert gw.request(key=BOB.secret)[0] == 401
        assert gw.request(key=carol.secret)[0] == 200
        assert gw.request(key=ALICE.secret)[0] == 200
        assert gw.pid == pid and gw._proc.poll() is None
    assert upstream.starts == 1


def test_past_its_rate_limit_a_key_gets_429_with_retry_after_and_other_keys_are_not_limited(tmp_path, upstream):
    limited = KeyRoute("limited", "pe-limited-5b7d9f1a3c5e7a9b1d3f5a7c9e1b3d5f", rate_limit_per_minute=5)
    with _gateway(tmp_path, upstream, [limited, BOB]) as gw:
        statuses = [gw.request(key=limited.secret)[0] for _ in range(5)]
        status, headers, _ = gw.request(key=limited.secret)
        others = [gw.request(key=BOB.secret)[0] for _ in range(10)]
        limited_log = [e for e in gw.logged(16) if e["status"] == 429]
    assert statuses == [200] * 5
    assert status == 429
    assert headers["retry-after"] == "12"
    assert others == [200] * 10
    assert [e["key"] for e in limited_log] == ["limited"]


def test_request_during_a_cold_start_waits_and_succeeds_once_the_engine_is_up(tmp_path):
    engine = Upstream()
    limits = GatewayLimits(cold_start_wait_seconds=15, retry_interval_ms=200)
    with Gateway(tmp_path, limits, engine.port, [ALICE]) as gw:
        timer = engine.start_after(5)
        started = time.monotonic()
        try:
            status, _, body = gw.request(key=ALICE.secret, timeout=30)
            waited = time.monotonic() - started
        finally:
            timer.cancel()
            engine.stop()
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello"
    assert 4.5 <= waited < 8


def test_request_is_refused_with_503_and_retry_after_when_the_engine_never_comes_up(tmp_path):
    absent = Upstream()
    with Gateway(tmp_path, FAST, absent.port, [ALICE]) as gw:
        started = time.monotonic()
        status, headers, _ = gw.request(key=ALICE.secret, timeout=30)
        waited = time.monotonic() - started
    assert status == 503
    assert headers["retry-after"] == str(gateway.COLD_START_RETRY_AFTER_SECONDS)
    assert FAST.cold_start_wait_seconds * 0.8 <= waited <= FAST.cold_start_wait_seconds * 1.5 + 1


def test_held_requests_count_as_pending_for_the_autoscaler(tmp_path):
    absent = Upstream()
    with Gateway(tmp_path, FAST, absent.port, [ALICE]) as gw:
        threads = [threading.Thread(target=gw.request, kwargs={"key": ALICE.secret}) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1)
        pending = gw.stat(gateway.PENDING_REQUESTS_STAT)
        # What KEDA reads, through the read-only metrics listener rather than the admin port.
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", gw.ports.metrics, timeout=5)
        conn.request("GET", f"/stats?filter=^{gateway.PENDING_REQUESTS_STAT}$&format=json")
        via_metrics = json.loads(conn.getresponse().read())
        conn.request("POST", "/quitquitquit")
        refused = conn.getresponse()
        refused.read()
        conn.close()
        for t in threads:
            t.join()
    assert pending == 3
    assert via_metrics["stats"][0]["value"] == 3
    assert refused.status == 404


def test_oversized_body_is_refused_with_413(tmp_path, upstream):
    with _gateway(tmp_path, upstream, [ALICE]) as gw:
        big = b'{"messages": "' + b"x" * (FAST.max_request_body_bytes + 1) + b'"}'
        status, _, _ = gw.request(key=ALICE.secret, body=big)
        assert gw.request(key=ALICE.secret)[0] == 200
    assert status == 413
    assert len(upstream.seen) == 1


def test_oversized_headers_are_refused(tmp_path, upstream):
    limits = GatewayLimits(cold_start_wait_seconds=3, retry_interval_ms=100, max_request_headers_kib=8)
    with _gateway(tmp_path, upstream, [ALICE], limits) as gw:
        status, _, _ = gw.request(key=ALICE.secret, headers={"x-big": "y" * 10_000})
    assert status == 431
    assert upstream.seen == []


def test_past_the_concurrent_request_cap_requests_are_refused_at_once_with_503_and_retry_after(tmp_path):
    absent = Upstream()
    limits = GatewayLimits(cold_start_wait_seconds=3, retry_interval_ms=100, max_concurrent_requests=2)
    results: list[tuple[int, int, dict, float]] = []

    def send(index: int) -> None:
        started = time.monotonic()
        status, headers, _ = gw.request(key=ALICE.secret)
        results.append((index, status, headers, time.monotonic() - started))

    with Gateway(tmp_path, limits, absent.port, [ALICE]) as gw:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.2)  # the first two are held before the others arrive
        for t in threads:
            t.join()
    by_index = {i: (status, headers, took) for i, status, headers, took in results}
    assert all(status == 503 and headers["retry-after"] == "30" for status, headers, _ in by_index.values())
    assert [took > 2 for _, _, took in (by_index[i] for i in range(4))] == [True, True, False, False]
