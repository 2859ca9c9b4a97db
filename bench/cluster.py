"""Local cache servers on free 127.0.0.1 ports: memcached pool, Redis, Redis Cluster, nutcracker.

Two users share this one code path: the test fixtures (tests/conftest.py), which start
servers per test and stop them afterwards, and `bench cluster up|status|down`, which starts
a whole local fleet as detached daemons that outlive the command and records them in
`<state-dir>/state.json`, so that `bench run --target local:memcached` (via
`resolve_local`) and `bench cluster down` can find them later from another process.

Servers are started with `posix_spawn` in their own session and tracked by pid only, so a
server looks the same whether this process started it or an earlier `bench` did. A start
waits until the process listens on its port *and* answers its protocol; a port grabbed by
someone else between `free_port()` and the server's bind is retried on a new port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bench.errors import InputError, TargetError

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
CLUSTER_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 0.5
PORT_ATTEMPTS = 8
STATE_FILE = "state.json"
STATE_FORMAT = 1
STATE_ENV = "CACHEBENCH_CLUSTER_STATE"
DEFAULT_STATE_DIR = ".cluster"
LOCAL_TARGETS = ("memcached", "redis", "redis-cluster", "nutcracker")
#: Only with `bench cluster up --gutter N`: the pool behind mcrouter-style routing.
GUTTER_TARGETS = ("memcached-wmf",)

# Debian package of each program, for the "install it with" message.
PACKAGES = {"memcached": "memcached", "redis-server": "redis-server",
            "redis-cli": "redis-tools", "nutcracker": "nutcracker"}
# Searched after PATH: Debian installs nutcracker in /usr/sbin, not on a user's PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_SCHEMES = {"memcached": "memcached", "redis": "redis", "redis-cluster": "redis+cluster"}
_TLS_SCHEMES = {"memcached": "memcached+tls", "redis": "rediss", "redis-cluster": "rediss+cluster"}
# One request per wire protocol and the start of the reply that proves the server works.
# RESP arrays rather than inline commands: nutcracker only parses the former.
# A Redis with a password answers NOAUTH: it is up all the same.
_PROBES = {"memcached": (b"version\r\n", (b"VERSION ",)),
           "redis": (b"*1\r\n$4\r\nPING\r\n", (b"+PONG", b"-NOAUTH"))}
_CLUSTER_INFO = b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n"
_INFO_REPLICATION = b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n"
_PORT_IN_USE = "Address already in use"


class PortTaken(TargetError):
    """The server could not bind its port because another process holds it."""


# --------------------------------------------------------------------------- programs

def _all_threads_stopped(pid: int) -> bool:
    """True when every thread of `pid` is in state T (stopped), per /proc."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = [Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                  for tid in tasks]
    except OSError:
        return True
    return all(state in ("T", "t") for state in states)


def find_binaries(*names: str) -> dict[str, str]:
    """Absolute paths of the named programs, or one InputError naming the Debian packages.

    Checked before anything starts so a fresh machine gets an install line, not a
    half-started fleet and a traceback.
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN_DIRS])
    found = {name: shutil.which(name, path=search) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(dict.fromkeys(PACKAGES[name] for name in names))
        raise InputError(f"{', '.join(missing)} not found on PATH; install with "
                         f"`apt-get install {packages}`")
    return {name: str(path) for name, path in found.items()}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick; it may be taken again
    before the server binds it, which the start functions detect and retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- processes

def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (zombies count as dead: PID 1 here may never reap them)."""
    if pid <= 0:  # waitpid and kill give 0 and -1 group-wide meanings: never a server
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child and it exited: reap it
            return False
    except ChildProcessError:
        pass  # started by another process (an earlier `bench cluster up`)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def runs_binary(pid: int, binary: str) -> bool:
    """Whether `pid` is alive and still runs `binary`, so a recycled pid is never killed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # redis-server rewrites its title to "path host:port", hence the split on spaces.
    words = cmdline.split(b"\0")[0].split()
    return (bool(words) and pid_alive(pid)
            and os.path.basename(words[0]) == os.path.basename(binary).encode())


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22): with the
    pid, it names one process for good, since a recycled pid starts later."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _listens(pid: int, port: int) -> bool:
    """Whether `pid` owns the listening socket on `port`: proves that whoever answers on the
    port is our server, not another one that grabbed the port first."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False


def _spawn(argv: Sequence[str], log: Path) -> int:
    """Start `argv` detached (own session, stdin /dev/null, output appended to `log`).

    posix_spawn rather than Popen: the servers must outlive `bench cluster up`, and a Popen
    dropped while its child runs warns and gets reaped behind our back.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")  # one start per log, so a failure reads its own lines
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    try:
        return os.posix_spawn(argv[0], list(argv), dict(os.environ),
                              file_actions=actions, setsid=True)
    except OSError as err:
        raise TargetError(f"cannot start {argv[0]}: {err.strerror}") from err


def _log_tail(log: Path, lines: int = 4) -> str:
    """The last lines of a server log, on one line, for an error message."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _ask(host: str, port: int, request: bytes, until: bytes, timeout: float) -> bytes:
    """Send one request and read until the regex `until` matches the reply.

    Raw sockets on purpose: the same probe must work for a server, a proxy and a cluster
    node, with no client library deciding on retries. Raises OSError when it cannot.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not re.search(until, reply):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{host}:{port} closed the connection")
            reply += chunk
        return reply


def _stop_pids(owned: dict[int, bool], timeout: float) -> dict[int, str]:
    """Stop processes (pid -> whether it is still the process we started) all at once,
    since memcached takes up to a second to act on SIGTERM: SIGTERM plus SIGCONT (a
    paused server must run to act on it), SIGKILL for those still there after `timeout`.

    pid -> "stopped", "gone" (was not running) or "foreign" (the pid now belongs to
    another process, which is left alone).
    """
    outcome = {pid: "gone" if not pid_alive(pid) else "stopped" if ours else "foreign"
               for pid, ours in owned.items()}
    pending = [pid for pid, result in outcome.items() if result == "stopped"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pending:
            for send in (sig, signal.SIGCONT):
                try:
                    os.kill(pid, send)
                except ProcessLookupError:
                    break
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            time.sleep(0.02)
            pending = [pid for pid in pending if pid_alive(pid)]
        if not pending:
            return outcome
    raise TargetError(f"pids {pending} survived SIGKILL")


# --------------------------------------------------------------------------- servers

@dataclass(frozen=True)
class ServerTls:
    """A server's TLS files (PEM paths). With `client_cert`, the server requires clients
    to present a certificate signed by `ca`, and its URL carries that certificate."""

    cert: str
    key: str
    ca: str
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def query(self) -> str:
        """The URL options a client needs to verify (and, if asked, authenticate to) it."""
        client = f"&cert={self.client_cert}&key={self.client_key}" if self.client_cert else ""
        return f"ca={self.ca}{client}"


@dataclass
class LocalServer:
    """One server process started here: enough to reach it, inspect it and stop it.

    `kind` is memcached, redis, redis-cluster (a cluster-enabled node) or nutcracker;
    `protocol` is what clients speak to it (memcached or redis).
    """

    name: str
    kind: str
    protocol: str
    port: int
    pid: int
    log: str
    argv: list[str]
    host: str = HOST
    stats_port: int | None = None  # nutcracker's JSON stats
    tls_port: int | None = None    # a TLS listener beside the plain `port`
    tls_query: str = ""            # what a client needs to verify it: ca=...[&cert=&key=]
    started_ticks: int | None = None  # start_ticks(pid); None in older state files

    @property
    def address(self) -> str:
        """`host:port`, as target URLs and server stats name nodes."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The target URL that reaches this server alone (over TLS when it has TLS)."""
        if self.tls_port:
            return f"{_TLS_SCHEMES[self.kind]}://{self.host}:{self.tls_port}?{self.tls_query}"
        return f"{_SCHEMES.get(self.kind, self.protocol)}://{self.address}"

    @property
    def nodes(self) -> list[str]:
        """The addresses behind `url` (one), like `ServerGroup.nodes`."""
        return [self.address]

    def alive(self) -> bool:
        """Whether the recorded pid is still this server: the same program, started at the
        recorded time (a state file without one: listening on the server's port). A pid
        recycled for another process, even of the same program, is not."""
        if not runs_binary(self.pid, self.argv[0]):
            return False
        if self.started_ticks is not None:
            return start_ticks(self.pid) == self.started_ticks
        return _listens(self.pid, self.port)

    def answering(self, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """Whether the server answers its protocol now (a paused one does not)."""
        request, expected = _PROBES[self.protocol]
        try:
            return _ask(self.host, self.port, request, b"\r\n", timeout).startswith(expected)
        except OSError:
            return False

    def health(self) -> str:
        """`answering`, `not answering` (alive but stuck or paused) or `dead`."""
        if not self.alive():
            return "dead"
        return "answering" if self.answering() else "not answering"

    def pause(self, settle_s: float = 1.0) -> None:
        """SIGSTOP: the server keeps its connections but stops answering (a stall).

        Returns once every thread of the server is stopped: the signal is asynchronous,
        and a request answered just after `pause()` returned would make a stall test lie.
        """
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and not _all_threads_stopped(self.pid):
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> str:
        """Terminate the server if its pid is still this server; see `_stop_pids`."""
        return stop_servers([self])[self.name]

    def kill(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGKILL, as a crash: no shutdown, every connection reset. Returns once the
        process is gone; a pid that no longer runs this program is left alone."""
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while pid_alive(self.pid):
            if time.monotonic() > deadline:
                raise TargetError(f"{self.name} (pid {self.pid}) survived SIGKILL")
            time.sleep(0.005)

    def restart(self, timeout: float = START_TIMEOUT_S) -> LocalServer:
        """Kill the server if it runs, then start the same program on the same port(s):
        memcached comes back empty, a Redis Cluster node rejoins with its nodes.conf.
        Returns the server with its new pid."""
        self.kill()
        return _launch(replace(self, pid=0), timeout)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in state.json."""
        return asdict(self) | {"address": self.address, "url": self.url}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalServer:
        """Inverse of `to_dict` (derived keys are ignored)."""
        return cls(**{k: v for k, v in data.items() if k not in ("address", "url")})


@dataclass
class ServerGroup:
    """Servers that serve one target URL together (a pool, a cluster, a proxy and its
    backends). `nodes` are the addresses clients talk to; `servers` all the processes."""

    url: str
    nodes: list[str]
    servers: list[LocalServer] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every server of the group."""
        stop_servers(self.servers)


def stop_servers(servers: Sequence[LocalServer],
                 timeout: float = STOP_TIMEOUT_S) -> dict[str, str]:
    """Stop servers together; name -> stopped | gone | foreign (see `_stop_pids`)."""
    outcome = _stop_pids({server.pid: server.alive() for server in servers}, timeout)
    return {server.name: outcome[server.pid] for server in servers}


@contextmanager
def stopped_on_error(started: list[LocalServer]) -> Iterator[list[LocalServer]]:
    """Yield a list to append started servers to; if the block fails, stop them all, so a
    half-started group leaves no process behind."""
    try:
        yield started
    except BaseException:
        stop_servers(started)
        raise


def _wait_ready(server: LocalServer, timeout: float) -> LocalServer:
    """Wait until the server listens on its port and answers; PortTaken if it lost the
    port to another process, TargetError (server stopped) if it dies or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        if _listens(server.pid, server.port) and server.answering():
            return server
        if not pid_alive(server.pid):
            tail = _log_tail(Path(server.log))
            if _PORT_IN_USE in tail:
                raise PortTaken(f"{server.name}: port {server.port} is in use ({tail})")
            raise TargetError(f"{server.name} exited while starting: {tail}")
        if time.monotonic() > deadline:
            server.stop()
            raise TargetError(f"{server.name} did not answer on {server.address} within "
                              f"{timeout:g}s; see {server.log}")
        time.sleep(0.02)


def _launch(server: LocalServer, timeout: float = START_TIMEOUT_S) -> LocalServer:
    """Spawn `server.argv` and wait until it answers; returns the server with its pid."""
    pid = _spawn(server.argv, Path(server.log))
    return _wait_ready(replace(server, pid=pid, started_ticks=start_ticks(pid)), timeout)


def _on_free_port(port: int, start: Callable[[int], LocalServer]) -> LocalServer:
    """`start(port)`; with port 0, on free ports, retrying when another process wins the
    race for one (an explicit port that is taken fails at once)."""
    if port:
        return start(port)
    for _ in range(PORT_ATTEMPTS - 1):
        try:
            return start(free_port())
        except PortTaken:
            continue
    return start(free_port())


def start_memcached(port: int, workdir: str | Path, memory_mb: int = 64, threads: int = 2,
                    name: str = "memcached", tls: ServerTls | None = None,
                    extra_args: Sequence[str] = ()) -> LocalServer:
    """memcached on 127.0.0.1:`port` (0: a free port), log in `workdir`/`name`.log. With
    `tls`, also a TLS listener (`-Z`) on a free port; `port` stays plain, for probes.
    `extra_args` go last, so they override the flags before them (`-t 4`)."""
    binary = find_binaries("memcached")["memcached"]
    log = Path(workdir).absolute() / f"{name}.log"

    def start(p: int) -> LocalServer:
        argv = [binary, "-l", HOST, "-p", str(p), "-U", "0", "-m", str(memory_mb),
                "-t", str(threads)]
        tls_port = free_port() if tls else None
        if tls:
            argv[1:5] = ["-Z", "-o", _memcached_tls_options(tls),
                         "-l", f"{HOST}:{tls_port},notls:{HOST}:{p}"]
        argv += extra_args
        if os.geteuid() == 0:  # memcached refuses to run as root without -u
            argv += ["-u", "root"]
        return _launch(LocalServer(name=name, kind="memcached", protocol="memcached", port=p,
                                   pid=0, log=str(log), argv=argv, tls_port=tls_port,
                                   tls_query=tls.query if tls else ""))

    return _on_free_port(port, start)


def start_redis(port: int, workdir: str | Path, cluster: bool = False,
                memory_mb: int | None = None, name: str = "redis",
                tls: ServerTls | None = None, config: Sequence[str] = ()) -> LocalServer:
    """redis-server on 127.0.0.1:`port` (0: a free port) without persistence.

    With `memory_mb` it evicts like a cache (allkeys-lru) instead of refusing writes. With
    `cluster` it is an empty cluster-enabled node (bus on its own free port); join nodes
    with `start_redis_cluster`. With `tls`, also a TLS listener on a free port (and a TLS
    cluster bus). `config`: redis.conf lines such as `requirepass ...` or `user ...`,
    written to `name`.conf so that no password shows in argv, ps or state.json.
    """
    binary = find_binaries("redis-server")["redis-server"]
    workdir = Path(workdir).absolute()
    log = workdir / f"{name}.log"
    nodes_conf = workdir / f"{name}-nodes.conf"

    def start(p: int) -> LocalServer:
        argv = [binary, *_redis_config_file(workdir / f"{name}.conf", config),
                "--port", str(p), "--bind", HOST, "--protected-mode", "no",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(workdir), "--logfile", str(log)]
        tls_port = free_port() if tls else None
        if tls:
            argv += _redis_tls_arguments(tls, tls_port, cluster)
        if memory_mb:
            argv += ["--maxmemory", f"{memory_mb}mb", "--maxmemory-policy", "allkeys-lru"]
        if cluster:
            nodes_conf.unlink(missing_ok=True)  # a node from an earlier cluster would not join
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(nodes_conf),
                     "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000"]
        return _launch(LocalServer(name=name, kind="redis-cluster" if cluster else "redis",
                                   protocol="redis", port=p, pid=0, log=str(log), argv=argv,
                                   tls_port=tls_port, tls_query=tls.query if tls else ""))

    return _on_free_port(port, start)


def _memcached_tls_options(tls: ServerTls) -> str:
    """memcached's `-o` TLS settings; with a client CA, a client certificate is required."""
    options = f"ssl_chain_cert={tls.cert},ssl_key={tls.key}"
    if tls.client_cert:
        options += f",ssl_ca_cert={tls.ca},ssl_verify_mode=2"
    return options


def _redis_tls_arguments(tls: ServerTls, tls_port: int | None, cluster: bool) -> list[str]:
    """redis-server's TLS flags: a TLS port beside the plain one, client certificates
    required only when `tls` names one, and a TLS bus for a cluster node (so that the
    cluster announces its TLS ports to TLS clients)."""
    argv = ["--tls-port", str(tls_port), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key,
            "--tls-ca-cert-file", tls.ca,
            "--tls-auth-clients", "yes" if tls.client_cert else "optional"]
    if cluster:
        argv += ["--tls-cluster", "yes", "--tls-replication", "yes"]
    return argv


def _redis_config_file(path: Path, lines: Sequence[str]) -> list[str]:
    """[path] after writing `lines` to it (owner-only: it may hold passwords); [] for none."""
    if not lines:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text("".join(f"{line}\n" for line in lines))
    return [str(path)]


def start_nutcracker(backends: Sequence[str], workdir: str | Path,
                     protocol: str = "memcached", port: int = 0,
                     name: str = "nutcracker") -> LocalServer:
    """nutcracker (twemproxy) on 127.0.0.1:`port` in front of `backends` ("host:port").

    ketama over md5, the same ring as cachebench's own memcached pool client (so a key
    lands on the same node through the proxy or without it); hosts are never ejected, so a stalled backend shows up as
    latency instead of silently moving keys. Stats (JSON) on `stats_port`.
    """
    if protocol not in _PROBES:
        raise ValueError(f"protocol must be memcached or redis, got {protocol!r}")
    binary = find_binaries("nutcracker")["nutcracker"]
    workdir = Path(workdir).absolute()
    conf, log = workdir / f"{name}.yml", workdir / f"{name}.log"

    def start(p: int) -> LocalServer:
        stats_port = free_port()
        pool = {"listen": f"{HOST}:{p}", "hash": "md5", "distribution": "ketama",
                "auto_eject_hosts": False, "preconnect": True, "redis": protocol == "redis",
                "servers": [f"{backend}:1" for backend in backends]}
        conf.write_text(yaml.safe_dump({"cachebench": pool}, sort_keys=False))
        argv = [binary, "-c", str(conf), "-s", str(stats_port), "-a", HOST, "-i", "1000",
                "-o", str(log)]
        return _launch(LocalServer(name=name, kind="nutcracker", protocol=protocol, port=p,
                                   pid=0, log=str(log), argv=argv, stats_port=stats_port))

    workdir.mkdir(parents=True, exist_ok=True)
    return _on_free_port(port, start)


def start_memcached_pool(n_nodes: int, workdir: str | Path, memory_mb: int = 64,
                         threads: int = 2) -> ServerGroup:
    """`n_nodes` memcached servers named memcached-1..n; url lists them all (client-side
    consistent hashing, as mcrouter does)."""
    with stopped_on_error([]) as servers:
        for i in range(1, n_nodes + 1):
            servers.append(start_memcached(0, workdir, memory_mb, threads, f"memcached-{i}"))
    nodes = [server.address for server in servers]
    return ServerGroup(url="memcached://" + ",".join(nodes), nodes=nodes, servers=servers)


def start_redis_cluster(n_masters: int, workdir: str | Path, memory_mb: int | None = None,
                        tls: ServerTls | None = None, replicas: int = 0) -> ServerGroup:
    """A Redis Cluster of `n_masters` masters, each with `replicas` replicas (which take
    over when their master dies), returned once every node says cluster_state:ok; url
    names one node, nodes all of them (their TLS addresses with `tls`)."""
    _require_masters(n_masters)
    cli = find_binaries("redis-server", "redis-cli")["redis-cli"]
    with stopped_on_error([]) as servers:
        for i in range(1, n_masters * (1 + replicas) + 1):
            servers.append(start_redis(0, workdir, cluster=True, memory_mb=memory_mb,
                                       name=f"redis-cluster-{i}", tls=tls))
        _create_cluster(cli, servers, replicas)
        _wait_cluster_ok(servers, CLUSTER_TIMEOUT_S)
        if replicas:
            _wait_replicas_synced(servers, CLUSTER_TIMEOUT_S)
    nodes = [f"{s.host}:{s.tls_port}" if s.tls_port else s.address for s in servers]
    query = f"?{tls.query}" if tls else ""
    scheme = _TLS_SCHEMES if tls else _SCHEMES
    return ServerGroup(url=f"{scheme['redis-cluster']}://{nodes[0]}{query}", nodes=nodes,
                       servers=servers)


def _require_masters(n_masters: int) -> None:
    """redis-cli refuses to create a cluster of fewer than 3 masters; say so up front."""
    if n_masters < 3:
        raise InputError(f"a Redis Cluster needs at least 3 masters, got {n_masters}",
                         field="--redis-cluster-masters")


def _create_cluster(cli: str, servers: Sequence[LocalServer], replicas: int = 0) -> None:
    """Join empty cluster-enabled nodes and split the slots with `redis-cli --cluster create`
    (over the plain ports; the first len/(1+replicas) nodes become the masters)."""
    argv = [cli, "--cluster", "create", *(s.address for s in servers),
            "--cluster-replicas", str(replicas), "--cluster-yes"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as err:
        raise TargetError(f"redis-cli --cluster create did not finish in {err.timeout:g}s") from err
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise TargetError(f"redis-cli --cluster create failed: {tail}")


def _cluster_state(server: LocalServer) -> str:
    """The node's own cluster_state (ok, fail), or `unreachable`."""
    try:
        reply = _ask(server.host, server.port, _CLUSTER_INFO, rb"cluster_state:\w+\r\n",
                     PROBE_TIMEOUT_S)
    except OSError:
        return "unreachable"
    match = re.search(rb"cluster_state:(\w+)", reply)
    return match.group(1).decode() if match else "unknown"


def _wait_cluster_ok(servers: Sequence[LocalServer], timeout: float) -> None:
    """Wait until every node has heard of all slots being served (gossip takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        states = {server.address: _cluster_state(server) for server in servers}
        if all(state == "ok" for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise TargetError(f"Redis Cluster not ok after {timeout:g}s: {states}")
        time.sleep(0.05)


def _replica_synced(server: LocalServer) -> bool:
    """A master, or a replica whose link to its master is up (it has the data: a replica
    that never synced refuses to take over, "disconnected from master for too long")."""
    try:
        reply = _ask(server.host, server.port, _INFO_REPLICATION,
                     rb"role:master|master_link_status:\w+", PROBE_TIMEOUT_S)
    except OSError:
        return False
    return b"role:master" in reply or b"master_link_status:up" in reply


def _wait_replicas_synced(servers: Sequence[LocalServer], timeout: float) -> None:
    """Wait until every replica has synced with its master, so that a master's death
    right after the start is survived."""
    deadline = time.monotonic() + timeout
    while not all(_replica_synced(server) for server in servers):
        if time.monotonic() > deadline:
            raise TargetError(f"Redis Cluster replicas not in sync after {timeout:g}s")
        time.sleep(0.05)


def start_proxied_pool(n_backends: int, workdir: str | Path,
                       protocol: str = "memcached") -> ServerGroup:
    """nutcracker in front of `n_backends` fresh memcached (or redis) servers; url and nodes
    name the proxy, servers are [*backends, proxy] (start order)."""
    with stopped_on_error([]) as servers:
        for i in range(1, n_backends + 1):
            if protocol == "redis":
                servers.append(start_redis(0, workdir, name=f"backend-{i}"))
            else:
                servers.append(start_memcached(0, workdir, name=f"backend-{i}"))
        proxy = start_nutcracker([s.address for s in servers], workdir, protocol)
        servers.append(proxy)
    return ServerGroup(url=proxy.url, nodes=[proxy.address], servers=servers)


# --------------------------------------------------------------------------- local fleet

@dataclass
class ClusterState:
    """What `bench cluster up` started: the servers and the URL of each local target."""

    state_dir: Path
    servers: list[LocalServer]
    urls: dict[str, str]
    started: str

    @property
    def path(self) -> Path:
        """The state file."""
        return self.state_dir / STATE_FILE

    def save(self) -> None:
        """Write state.json atomically (a reader never sees half a file)."""
        data = {"format": STATE_FORMAT, "started": self.started,
                "state_dir": str(self.state_dir), "urls": self.urls,
                "servers": [server.to_dict() for server in self.servers]}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState | None:
        """The recorded state, None when there is none; InputError if it is unreadable."""
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(state_dir=state_dir, urls=dict(data["urls"]), started=data["started"],
                       servers=[LocalServer.from_dict(s) for s in data["servers"]])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"unreadable cluster state ({err}); remove it and run "
                             "`bench cluster up` again", file=str(path)) from err


def cluster_up(state_dir: Path, memory_mb: int, memcached_nodes: int = 3,
               redis_cluster_masters: int = 3, gutter_nodes: int = 0,
               redis_cluster_replicas: int = 0) -> ClusterState:
    """Start the local fleet and record it: a memcached pool, a standalone Redis, a Redis
    Cluster (with replicas if asked) and nutcracker in front of the pool; with
    `gutter_nodes`, a gutter pool too and `local:memcached-wmf`, the pool behind
    mcrouter-style routing with the WMF preset. All or nothing: on failure what was
    started is stopped again."""
    if memcached_nodes < 1:
        raise InputError(f"expected at least 1, got {memcached_nodes}", field="--memcached-nodes")
    for flag, count in (("--gutter", gutter_nodes), ("--replicas", redis_cluster_replicas)):
        if count < 0:
            raise InputError(f"expected 0 or more, got {count}", field=flag)
    _require_masters(redis_cluster_masters)
    find_binaries(*PACKAGES)
    state_dir = state_dir.absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    with stopped_on_error([]) as started:
        pool = start_memcached_pool(memcached_nodes, state_dir, memory_mb)
        started += pool.servers
        redis = start_redis(0, state_dir, memory_mb=memory_mb)
        started.append(redis)
        cluster = start_redis_cluster(redis_cluster_masters, state_dir, memory_mb,
                                      replicas=redis_cluster_replicas)
        started += cluster.servers
        proxy = start_nutcracker(pool.nodes, state_dir)
        started.append(proxy)
        urls = {"memcached": pool.url, "redis": redis.url, "redis-cluster": cluster.url,
                "nutcracker": proxy.url}
        if gutter_nodes:
            gutter = [start_memcached(0, state_dir, memory_mb, name=f"gutter-{i}")
                      for i in range(1, gutter_nodes + 1)]
            started += gutter
            urls["memcached-wmf"] = (f"{pool.url}?preset=wmf&gutter="
                                     + ",".join(server.address for server in gutter))
        state = ClusterState(state_dir=state_dir, servers=started,
                             started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             urls=urls)
        state.save()
    return state


def cluster_down(state_dir: Path) -> dict[str, str]:
    """Stop what `cluster_up` recorded (only pids that still run the recorded program) and
    remove the state file; name -> stopped | gone | foreign. Idempotent."""
    state = ClusterState.load(state_dir)
    if state is None:
        return {}
    outcome = stop_servers(state.servers)
    state.path.unlink(missing_ok=True)
    return outcome


def state_dir_default() -> str:
    """$CACHEBENCH_CLUSTER_STATE, else `.cluster`: scripts that run their own cluster
    elsewhere can still name its servers `local:...`."""
    return os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR


def resolve_local(name: str, state_dir: str | Path | None = None) -> str:
    """The URL of `local:memcached|redis|redis-cluster|nutcracker` from the state file."""
    state_dir = state_dir or state_dir_default()
    key = name.removeprefix("local:")
    if key not in LOCAL_TARGETS + GUTTER_TARGETS:
        known = ", ".join(f"local:{t}" for t in LOCAL_TARGETS + GUTTER_TARGETS)
        raise InputError(f"unknown local target {name!r}; expected one of {known}",
                         field="--target")
    state = ClusterState.load(Path(state_dir))
    if state is None:
        raise InputError(_not_running(Path(state_dir)), field="--target")
    if key not in state.urls:   # memcached-wmf: only with a gutter pool
        raise InputError(f"{name} needs a gutter pool: `bench cluster down`, then "
                         "`bench cluster up --gutter 1`", field="--target")
    return state.urls[key]


def ensure_up(state_dir: Path, memory_mb: int, memcached_nodes: int = 3,
              redis_cluster_masters: int = 3, gutter_nodes: int = 0,
              redis_cluster_replicas: int = 0) -> tuple[ClusterState, str]:
    """The recorded fleet when every server answers, else a fresh one (what is left of a
    stale one stopped first); with how: "already running", "started" or "restarted".
    `gutter_nodes` and `redis_cluster_replicas` as for `cluster_up`."""
    state = ClusterState.load(state_dir)
    if state is not None and all(server.health() == "answering" for server in state.servers):
        return state, "already running"
    if state is not None:
        cluster_down(state_dir)
    fresh = cluster_up(state_dir, memory_mb, memcached_nodes, redis_cluster_masters,
                       gutter_nodes, redis_cluster_replicas)
    return fresh, "started" if state is None else "restarted"


def cluster_status(state_dir: Path) -> tuple[ClusterState, dict[str, str]]:
    """The recorded fleet and each server's health by name; InputError when none runs."""
    state = ClusterState.load(state_dir)
    if state is None:
        raise InputError(_not_running(state_dir))
    return state, {server.name: server.health() for server in state.servers}


def _not_running(state_dir: Path) -> str:
    """The message for a missing state file, with the command that fixes it."""
    flag = "" if str(state_dir) == DEFAULT_STATE_DIR else f" --state-dir {state_dir}"
    return f"no local cluster is running (start it with `bench cluster up{flag}`)"
