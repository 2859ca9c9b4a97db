"""One syscall per request: client sockets whose `sendall` is their own `send`.

A cache request is a few dozen bytes, which the kernel takes in one send(). The standard
library's sendall does just that, but gevent's, which the clients in every Locust process
use, first asks the kernel for SO_SNDBUF (a getsockopt syscall), then slices the data
into memoryviews and reads the clock, on every request: measured on a worker at its
closed-loop ceiling, 8% of its samples in getsockopt alone. `one_send` turns a connected
socket into one whose sendall calls the socket's own send() until all is sent, so the
blocking and the timeout stay the socket's (gevent's send waits for the socket to become
writable, within the socket's timeout, as its sendall does).

It works by giving the socket object a subclass of its own class (the same layout, only
`sendall` differs), so whatever created the socket (pymemcache, redis-py) and whatever
reads from it are unchanged.
"""

from __future__ import annotations

import socket
from typing import Any

_SUBCLASSES: dict[type, type] = {}


def _sendall(self: Any, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
    """sendall as one send() (the usual case), more only when the kernel took a part."""
    sent = self.send(data, flags)
    if sent < len(data):
        view = memoryview(data)
        while sent < len(view):
            sent += self.send(view[sent:], flags)


def one_send(sock: socket.socket) -> socket.socket:
    """`sock` itself, from now on sending each sendall() with as few syscalls as it can."""
    base = type(sock)
    subclass = _SUBCLASSES.get(base)
    if subclass is None:
        subclass = _SUBCLASSES[base] = type(f"OneSend{base.__name__}", (base,),
                                            {"__slots__": (), "sendall": _sendall})
    sock.__class__ = subclass
    return sock
