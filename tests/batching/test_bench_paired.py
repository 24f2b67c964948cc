"""bench/paired.py: its keep-alive client against real loopback servers, and its statistics."""

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay_s = delay_s
        self.status = status
        self.connections = 0
        self.bodies: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/models/m:predict"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, framed by Content-Length
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(body)
        time.sleep(self.server.delay_s)
        # An answer larger than one recv, so the client must read it in pieces.
        answer = b"x" * 200_000
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def servers() -> Iterator[Callable[..., _Server]]:
    started: list[_Server] = []

    def start(delay_s: float = 0.0, status: int = 200) -> _Server:
        server = _Server(delay_s, status)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_one_connection_carries_every_request_and_every_answer_is_read_whole(paired, servers):
    server = servers()
    client = paired.KeepAlive(server.url, b'{"instances": [[1.0]]}')
    try:
        seconds = [client.post() for _ in range(5)]
    finally:
        client.close()
    assert server.connections == 1
    assert server.bodies == [b'{"instances": [[1.0]]}'] * 5
    assert all(s > 0 for s in seconds)


def test_an_answer_other_than_200_is_an_error_not_a_latency(paired, servers):
    server = servers(status=503)
    client = paired.KeepAlive(server.url, b"{}")
    try:
        with pytest.raises(RuntimeError, match="503"):
            client.post()
    finally:
        client.close()


def test_a_slower_server_shows_a_positive_difference_with_an_interval_around_it(paired, servers):
    fast, slow = servers(), servers(delay_s=0.005)
    report = paired.measure(
        {"fast": fast.url, "slow": slow.url}, b"{}", "fast", rounds=40, max_seconds=30
    )
    assert report["rounds"] == 40
    found = report["difference_ms"]["slow"]
    # The slow server sleeps 5 ms more on every request, whatever the machine's speed.
    assert found["low"] <= found["median"] <= found["high"]
    assert found["low"] > 0
    assert set(report["p50_ms"]) == {"fast", "slow"}
    assert report["p50_ms"]["slow"] > report["p50_ms"]["fast"]
    # Each server got the warm-up requests and then one request a round.
    assert len(fast.bodies) == len(slow.bodies) == paired.WARM_UP_REQUESTS + 40


def test_rounds_stop_at_the_time_limit(paired, servers):
    fast, slow = servers(), servers(delay_s=0.02)
    clients = {"fast": paired.KeepAlive(fast.url, b"{}"), "slow": paired.KeepAlive(slow.url, b"{}")}
    try:
        times = paired.paired_rounds(clients, rounds=10_000, max_seconds=0.2)
    finally:
        for client in clients.values():
            client.close()
    # Each round takes at least 20 ms: far fewer than 10,000 fit in 0.2 s, and every arm
    # has one time per round.
    assert 1 <= len(times["fast"]) == len(times["slow"]) < 100


def test_the_median_difference_and_its_interval(paired):
    constant = paired.median_difference([0.5] * 101)
    assert (constant.median_ms, constant.low_ms, constant.high_ms) == (0.5, 0.5, 0.5)
    spread = [float(v) for v in range(-50, 51)]  # median 0
    found = paired.median_difference(spread, seed=3)
    assert found.median_ms == 0.0
    assert found.low_ms < 0.0 < found.high_ms
    assert paired.median_difference(spread, seed=3) == found  # seeded: the same run again
    with pytest.raises(ValueError, match="no paired rounds"):
        paired.median_difference([])


def test_compare_pairs_every_arm_with_the_reference_round_by_round(paired):
    times = {"bare": [1.0, 5.0, 1.0], "mlkube": [1.2, 5.2, 1.2]}
    report = paired.compare(times, "bare")
    # Per-round differences are all +0.2 although the medians of the rounds differ widely.
    assert report["difference_ms"]["mlkube"] == {"median": 0.2, "low": 0.2, "high": 0.2}
    assert report["p50_ms"] == {"bare": 1.0, "mlkube": 1.2}
    assert "bare" not in report["difference_ms"]
