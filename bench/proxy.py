"""A TCP proxy for loopback that delays every request by a set time: a slowdown of
known size.

Why: a latency gate (`bench regress`, `make gate-power`) is only as good as the
slowdowns it is shown to catch, so its tests need a candidate that is slower by exactly
a chosen amount and different in nothing else. Put this proxy in front of a server and
point the client at `proxy.address`: every chunk the client sends is held `delay_s`
before it goes on to the server, so every round trip of a request/response protocol
(memcached, Redis) takes `delay_s` longer. Replies pass straight back. `delay_s` may be
changed while the proxy runs (a fault that comes and goes); it applies to what is read
from then on.

Requests are stamped when they arrive and each is sent at its own due time, so requests
that queue up behind each other are each delayed once, not one after the other: a line
with latency, not a bottleneck.

Threads, not asyncio: asyncio waits in epoll with millisecond timeouts, which would turn
a 50 us delay into 1 ms; `time.sleep` sleeps microseconds (plus the kernel's timer
slack, which the sending threads lower to 1 us on Linux). Three threads per connection:
one reads and stamps requests, one sends them when due, one copies replies back.
"""

from __future__ import annotations

import ctypes
import queue
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

CHUNK = 65536
ACCEPT_POLL_S = 0.1  # how soon the accepting thread notices stop()
JOIN_TIMEOUT_S = 2.0
_PR_SET_TIMERSLACK = 29
_Request = tuple[float, bytes] | None  # (due time on perf_counter, data); None: no more


class DelayProxy:
    """Listens on `host:port` (0: a free port) and forwards each connection to `upstream`
    ("host:port"), holding every chunk from the client `delay_s` seconds."""

    def __init__(self, upstream: str, delay_s: float = 0.0, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if delay_s < 0:
            raise ValueError(f"expected a delay >= 0, got {delay_s}")
        host_part, _, port_part = upstream.rpartition(":")  # not bench.targets: a sibling layer
        self.upstream = (host_part, int(port_part))
        self.delay_s = delay_s
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(ACCEPT_POLL_S)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        """`host:port` to point clients at."""
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> DelayProxy:
        """Start accepting connections (in a background thread); returns self."""
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection, wait for the threads to end."""
        self._stopping.set()
        with self._lock:
            for sock in self._sockets:
                _shutdown(sock, socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(JOIN_TIMEOUT_S)
        self._listener.close()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        """Join a new client to a new upstream connection; a client whose upstream cannot
        be reached is hung up on, as a dead server would."""
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets |= {client, server}
        link = _Link(client, server, self._closed)
        requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._spawn(self._stamp, client, requests, link)
        self._spawn(_send_when_due, requests, server, link)
        self._spawn(_copy, server, client, link)

    def _stamp(self, client: socket.socket, requests: queue.SimpleQueue[_Request],
               link: _Link) -> None:
        """Read requests as they come and queue each with its due time."""
        try:
            while data := client.recv(CHUNK):
                requests.put((time.perf_counter() + self.delay_s, data))
        except OSError:
            link.cut()
        finally:
            requests.put(None)

    def _closed(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets -= set(sockets)
        for sock in sockets:
            sock.close()


class _Link:
    """The two sockets of one proxied connection: each direction ends on its own (a
    half-close is passed on), and both sockets close once both directions ended."""

    def __init__(self, client: socket.socket, server: socket.socket,
                 closed: Callable[..., None]) -> None:
        self.sockets = (client, server)
        self._closed = closed
        self._open = 2
        self._lock = threading.Lock()

    def ended(self, towards: socket.socket) -> None:
        """One direction is done: tell its receiver, close all when it was the last."""
        _shutdown(towards, socket.SHUT_WR)
        with self._lock:
            self._open -= 1
            last = self._open == 0
        if last:
            self._closed(*self.sockets)

    def cut(self) -> None:
        """An error on either side ends both directions at once (a reset connection)."""
        for sock in self.sockets:
            _shutdown(sock, socket.SHUT_RDWR)


def _send_when_due(requests: queue.SimpleQueue[_Request], server: socket.socket,
                   link: _Link) -> None:
    """Send each queued request at its due time, in order."""
    _fine_timer_slack()
    try:
        while (request := requests.get()) is not None:
            due, data = request
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            server.sendall(data)
    except OSError:
        link.cut()
    link.ended(server)


def _copy(source: socket.socket, sink: socket.socket, link: _Link) -> None:
    """Replies, straight back."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        link.cut()
    link.ended(sink)


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:  # already closed or never connected
        pass


def _fine_timer_slack() -> None:
    """Let this thread's sleeps end within 1 us of their time instead of the default 50 us
    (Linux prctl PR_SET_TIMERSLACK; elsewhere nothing happens)."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass
