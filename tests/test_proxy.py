"""bench.proxy.DelayProxy in front of a real memcached: bytes pass both ways unchanged,
every request is held at least the delay (and only once, however many queue up), the
delay can change while connections are open, and stop() leaves nothing running.

Timing assertions are lower bounds (a sleep never ends early) or relations between two
measurements of the same run; none compares with a figure from another machine.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest

from bench.proxy import DelayProxy
from bench.targets import open_target, parse_target

DELAY_S = 0.005


def _connect(proxy: DelayProxy) -> socket.socket:
    host, port = proxy.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _ask(sock: socket.socket, request: bytes, until: bytes = b"\r\n") -> bytes:
    sock.sendall(request)
    reply = b""
    while not reply.endswith(until):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {reply!r}"
        reply += chunk
    return reply


def _round_trips(address: str, n: int = 50) -> list[float]:
    with open_target(parse_target(f"memcached://{address}")) as client:
        client.get("warm")
        times = []
        for _ in range(n):
            began = time.perf_counter()
            client.get("cbtest:proxy:missing")
            times.append(time.perf_counter() - began)
    return times


def test_values_pass_unchanged_both_ways(memcached_server) -> None:
    """A value larger than one read chunk, written and read back through the proxy."""
    value = bytes(range(256)) * 1024  # 256 KiB
    with DelayProxy(memcached_server.address, 0.001) as proxy:
        with open_target(parse_target(f"memcached://{proxy.address}")) as client:
            client.set("cbtest:proxy:big", value, 0)
            assert client.get("cbtest:proxy:big") == value
        with open_target(parse_target(memcached_server.url)) as direct:
            assert direct.get("cbtest:proxy:big") == value


def test_every_round_trip_takes_at_least_the_delay(memcached_server) -> None:
    with DelayProxy(memcached_server.address, 0.0) as plain, \
            DelayProxy(memcached_server.address, DELAY_S) as delayed:
        fast, slow = _round_trips(plain.address), _round_trips(delayed.address)
    assert min(slow) >= DELAY_S
    assert statistics.median(slow) - statistics.median(fast) >= DELAY_S * 0.9


def test_queued_requests_are_each_delayed_once(memcached_server) -> None:
    """Ten requests sent 5 ms apart through a 100 ms proxy: each waits 100 ms from its own
    arrival, so the last reply comes about 150 ms after the first send, not the 1 s a
    proxy that delays one request after the other would take."""
    delay, count = 0.100, 10
    with DelayProxy(memcached_server.address, delay) as proxy:
        sock = _connect(proxy)
        began = time.perf_counter()
        for _ in range(count):
            sock.sendall(b"version\r\n")
            time.sleep(0.005)
        reply = b""
        while reply.count(b"VERSION ") < count:
            reply += sock.recv(65536)
        took = time.perf_counter() - began
        sock.close()
    assert delay <= took < count * delay / 2


def test_delay_changes_while_a_connection_is_open(memcached_server) -> None:
    with DelayProxy(memcached_server.address, 0.0) as proxy:
        sock = _connect(proxy)
        assert _ask(sock, b"version\r\n").startswith(b"VERSION ")
        proxy.delay_s = 0.050
        began = time.perf_counter()
        assert _ask(sock, b"version\r\n").startswith(b"VERSION ")
        assert time.perf_counter() - began >= 0.050
        sock.close()


def test_a_half_close_still_gets_its_reply(memcached_server) -> None:
    """`printf 'version\\r\\n' | nc`: the client stops sending, then reads to the end."""
    with DelayProxy(memcached_server.address, DELAY_S) as proxy:
        sock = _connect(proxy)
        sock.sendall(b"version\r\n")
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        sock.close()
    assert reply.startswith(b"VERSION ") and reply.endswith(b"\r\n")


def test_unreachable_upstream_hangs_up_on_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{unused.getsockname()[1]}"  # bound, never listening
        with DelayProxy(dead) as proxy:
            sock = _connect(proxy)
            sock.sendall(b"version\r\n")
            try:
                assert sock.recv(65536) == b""
            except ConnectionResetError:
                pass
            sock.close()


def test_stop_cuts_connections_and_ends_every_thread(memcached_server) -> None:
    before = threading.active_count()
    proxy = DelayProxy(memcached_server.address, DELAY_S).start()
    socks = [_connect(proxy) for _ in range(3)]
    for sock in socks:
        assert _ask(sock, b"version\r\n").startswith(b"VERSION ")
    proxy.stop()
    for sock in socks:
        try:
            assert sock.recv(65536) == b""
        except ConnectionResetError:
            pass
        sock.close()
    assert threading.active_count() == before
    with pytest.raises(OSError):
        _connect(proxy)


def test_negative_delay_is_refused(memcached_server) -> None:
    with pytest.raises(ValueError, match="delay >= 0"):
        DelayProxy(memcached_server.address, -0.001)
