"""The egress proxy on loopback: an allowed "API" is reachable through it, a forbidden local server is not, and
every attempt is reported; bad, oversized and slow requests are refused without hanging it."""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aictl.sandbox.egress import MAX_HEAD_BYTES, EgressProxy, parse_hostport


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello from {self.server.server_address[0]} path={self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "keep-alive")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def _server(host: str):
    srv = ThreadingHTTPServer((host, 0), _Hello)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture
def api():
    srv = _server("127.0.0.1")
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def forbidden():
    """A second local server the allow list does not name: another loopback address."""
    try:
        srv = _server("127.0.0.2")
    except OSError:
        pytest.skip("127.0.0.2 is not usable on this host")
    yield srv
    srv.shutdown()
    srv.server_close()


def _hp(srv) -> str:
    host, port = srv.server_address[:2]
    return f"{host}:{port}"


def _get(proxy: EgressProxy, url: str) -> tuple[int, str, str | None]:
    host, port = proxy.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", url)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body, resp.getheader("Connection")


def test_plain_http_reaches_the_allowed_api_and_the_forbidden_host_gets_403(api, forbidden):
    seen = []
    with EgressProxy([_hp(api)], on_attempt=seen.append) as proxy:
        status, body, connection = _get(proxy, f"http://{_hp(api)}/v1/messages?x=1")
        assert status == 200 and body == "hello from 127.0.0.1 path=/v1/messages?x=1"
        # The proxy ends each forwarded exchange, and says so, so no client reuses the connection for another host.
        assert connection == "close"
        status, body, _ = _get(proxy, f"http://{_hp(forbidden)}/secret")
        assert status == 403 and "not allowed" in body
        attempts = proxy.attempts()
    assert [(a.host, a.port, a.method, a.allowed) for a in seen] == [
        ("127.0.0.1", api.server_address[1], "GET", True),
        ("127.0.0.2", forbidden.server_address[1], "GET", False),
    ]
    assert {(a["host"], a["allowed"], a["count"]) for a in attempts} == {
        ("127.0.0.1", True, 1),
        ("127.0.0.2", False, 1),
    }


def test_connect_tunnels_to_the_allowed_pair_only_and_carries_bytes_both_ways(api, forbidden):
    seen = []
    with EgressProxy([_hp(api)], on_attempt=seen.append) as proxy:
        conn = http.client.HTTPConnection(*proxy.address, timeout=10)
        conn.set_tunnel(*api.server_address[:2])
        conn.request("POST", "/echo", body=b"x" * 200_000, headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"x" * 200_000
        conn.close()
        refused = http.client.HTTPConnection(*proxy.address, timeout=10)
        refused.set_tunnel(*forbidden.server_address[:2])
        with pytest.raises(OSError, match="403"):
            refused.request("GET", "/")
        refused.close()
    assert [(a.method, a.host, a.allowed) for a in seen] == [
        ("CONNECT", "127.0.0.1", True),
        ("CONNECT", "127.0.0.2", False),
    ]


def test_same_host_other_port_is_refused_and_repeats_are_folded_with_a_count(api):
    other = _server("127.0.0.1")
    try:
        with EgressProxy([_hp(api)]) as proxy:
            for _ in range(3):
                assert _get(proxy, f"http://{_hp(other)}/")[0] == 403
            rows = proxy.attempts()
    finally:
        other.shutdown()
        other.server_close()
    assert rows == [{**rows[0], "host": "127.0.0.1", "port": other.server_address[1], "allowed": False, "count": 3}]


def test_decide_extends_the_allow_list_and_a_failing_decision_refuses(api, forbidden):
    asked = []

    def decide(host: str, port: int) -> bool:
        asked.append((host, port))
        if port == forbidden.server_address[1]:
            raise RuntimeError("policy store down")
        return True

    with EgressProxy([], decide=decide) as proxy:
        assert _get(proxy, f"http://{_hp(api)}/")[0] == 200
        status, body, _ = _get(proxy, f"http://{_hp(forbidden)}/")
    assert status == 403 and "decision failed" in body
    assert asked == [("127.0.0.1", api.server_address[1]), ("127.0.0.2", forbidden.server_address[1])]


def _raw(proxy: EgressProxy, data: bytes) -> bytes:
    with socket.create_connection(proxy.address, timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    return out


def test_malformed_oversized_and_non_http_requests_are_refused_without_dialling(api):
    seen = []
    with EgressProxy([_hp(api)], on_attempt=seen.append) as proxy:
        assert _raw(proxy, b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(proxy, b"GET ftp://127.0.0.1:21/ HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(proxy, b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(proxy, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
        huge = b"GET http://" + _hp(api).encode() + b"/ HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
        assert _raw(proxy, huge).startswith(b"HTTP/1.1 431")
        assert _raw(proxy, b"GET http://" + _hp(api).encode() + b"/ HTTP/1.1\r\n").startswith(b"HTTP/1.1 400")
    assert seen == []


def test_connection_cap_answers_503_and_close_ends_open_tunnels(api):
    with EgressProxy([_hp(api)], max_connections=1) as proxy:
        holder = socket.create_connection(proxy.address, timeout=10)
        holder.sendall(f"CONNECT {_hp(api)} HTTP/1.1\r\n\r\n".encode())
        assert holder.recv(100).startswith(b"HTTP/1.1 200")
        assert _raw(proxy, f"GET http://{_hp(api)}/ HTTP/1.1\r\n\r\n".encode()).startswith(b"HTTP/1.1 503")
    holder.settimeout(10)
    assert holder.recv(100) == b""  # the proxy's close ended the tunnel it was holding
    holder.close()


def test_clients_outside_the_given_network_are_not_served(api):
    with EgressProxy([_hp(api)], clients="10.99.0.0/16") as proxy, socket.create_connection(proxy.address, 10) as s:
        s.sendall(f"GET http://{_hp(api)}/ HTTP/1.1\r\n\r\n".encode())
        try:
            answer = s.recv(100)
        except ConnectionResetError:  # closed over the unread request: a reset, and no answer either way
            answer = b""
        assert answer == b""


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("Example.COM:443", ("example.com", 443)), ("[::1]:80", ("::1", 80)), ("h.", ("h", 80))],
)
def test_parse_hostport(text, parsed):
    assert parse_hostport(text, 80) == parsed


@pytest.mark.parametrize("text", ["h:0", "h:99999", "h:x", ":80", "a b:1", "user@h:1", "h"])
def test_parse_hostport_refuses(text):
    with pytest.raises(ValueError):
        parse_hostport(text)


def test_an_interim_100_continue_passes_and_the_final_response_is_closed(api):
    body = b"y" * 5000
    with EgressProxy([_hp(api)]) as proxy, socket.create_connection(proxy.address, timeout=10) as s:
        s.sendall(
            f"POST http://{_hp(api)}/echo HTTP/1.1\r\nHost: {_hp(api)}\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        s.sendall(body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    interim, _, rest = out.partition(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue"  # passed through unchanged
    final, _, rest = rest.partition(b"\r\n\r\n")
    assert final.startswith(b"HTTP/1.1 200") and b"Connection: close" in final and rest == body
