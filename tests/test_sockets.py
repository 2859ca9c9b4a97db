"""Client sockets that send each request with one syscall (bench/targets/sockets.py).

The targets' clients get such sockets when they connect; a value far larger than what
the kernel takes in one send() (16 MiB to Redis: several partial sends, measured) still
goes whole, on plain sockets and on gevent's (the ones Locust processes use), through
real servers. memcached takes items up to 1 MiB, so it gets 900 KiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.targets import open_target, parse_target

ROOT = Path(__file__).resolve().parent.parent
BIG = {"memcached_server": 900 * 1024, "redis_server": 16 * 1024 * 1024}

GEVENT_ROUND_TRIP = """
from gevent import monkey; monkey.patch_all()
import sys
from bench.targets import open_target, parse_target
value = bytes(range(256)) * ({size} // 256)
with open_target(parse_target(sys.argv[1])) as target:
    target.set("cachebench:test:sockets:gevent", value, 60)
    assert target.get("cachebench:test:sockets:gevent") == value
print("ok")
"""


def _socket_class(target) -> str:
    """The class name of the socket behind a target's (first) connection."""
    client = getattr(target, "_only", None)
    sock = client.sock if client is not None else target._client.connection._sock
    return type(sock).__name__


@pytest.mark.parametrize("server", ["memcached_server", "redis_server"])
def test_a_value_larger_than_a_send_buffer_goes_whole(server, request, key_prefix) -> None:
    url = request.getfixturevalue(server).url
    value = bytes(range(256)) * (BIG[server] // 256)
    with open_target(parse_target(url)) as target:
        target.set(f"{key_prefix}big", value, 60)
        assert target.get(f"{key_prefix}big") == value
        assert _socket_class(target).startswith("OneSend")


@pytest.mark.parametrize("server", ["memcached_server", "redis_server"])
def test_the_same_on_gevent_sockets(server, request) -> None:
    url = request.getfixturevalue(server).url
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", GEVENT_ROUND_TRIP.format(size=BIG[server]), url],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
