"""Secure connections against real servers: TLS to memcached (`-Z`), Redis and Redis
Cluster with a CA and certificates made here (openssl CLI), Redis AUTH with a password and
an ACL user, and no secret in anything a run writes or prints.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bench import cluster
from bench.cli import main
from bench.errors import EXIT_UNREACHABLE, InputError
from bench.targets import error_kind, open_target, parse_target, server_stats
from bench.vocabulary import ERROR_CONNECTION
from helpers_exits import or_invalid

PASSWORD = "s3cret-Pa55word"


@dataclass(frozen=True)
class Pki:
    """A test CA and what it signed: a server certificate for 127.0.0.1 and cache.test,
    one for sni.test alone, and a client certificate."""

    ca: Path
    server: cluster.ServerTls
    sni_only: cluster.ServerTls
    mutual: cluster.ServerTls     # the server certificate, clients must present theirs


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _signed(directory: Path, ca: Path, ca_key: Path, name: str, san: str) -> tuple[Path, Path]:
    """(certificate, key) for `san`, signed by the CA."""
    key, csr, crt = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=test CA")
    crt, key = _signed(directory, ca, ca_key, "server", "IP:127.0.0.1,DNS:cache.test")
    sni_crt, sni_key = _signed(directory, ca, ca_key, "sni", "DNS:sni.test")
    client_crt, client_key = _signed(directory, ca, ca_key, "client", "DNS:client.test")
    return Pki(ca=ca, server=cluster.ServerTls(str(crt), str(key), str(ca)),
               sni_only=cluster.ServerTls(str(sni_crt), str(sni_key), str(ca)),
               mutual=cluster.ServerTls(str(crt), str(key), str(ca), str(client_crt),
                                        str(client_key)))


def _serve(server: cluster.LocalServer | cluster.ServerGroup) -> Iterator:
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_memcached(pki: Pki, tmp_path: Path) -> Iterator[cluster.LocalServer]:
    yield from _serve(cluster.start_memcached(0, tmp_path, tls=pki.server))


@pytest.fixture(scope="module")
def tls_redis_cluster(pki: Pki, tmp_path_factory) -> Iterator[cluster.ServerGroup]:
    yield from _serve(cluster.start_redis_cluster(3, tmp_path_factory.mktemp("tls-cluster"),
                                                  tls=pki.server))


@pytest.fixture
def acl_redis(pki: Pki, tmp_path: Path) -> Iterator[cluster.LocalServer]:
    """Redis over TLS with a default password and an ACL user `bench`."""
    config = [f"requirepass {PASSWORD}-default",
              f"user bench on >{PASSWORD} ~* &* +@all"]
    yield from _serve(cluster.start_redis(0, tmp_path, tls=pki.server, config=config))


def _round_trip(url: str) -> None:
    with open_target(parse_target(url)) as target:
        target.set("tls:key", b"value", 60)
        assert target.get("tls:key") == b"value"


def test_memcached_over_tls(tls_memcached: cluster.LocalServer) -> None:
    url = tls_memcached.url
    assert url.startswith(f"memcached+tls://127.0.0.1:{tls_memcached.tls_port}?ca=")
    _round_trip(url)
    stats = server_stats(parse_target(url))[f"127.0.0.1:{tls_memcached.tls_port}"]
    assert stats["cmd_set"] >= 1 and stats["get_hits"] >= 1
    # The same port without TLS is not a memcached that answers.
    with open_target(parse_target(f"memcached://127.0.0.1:{tls_memcached.tls_port}")) as plain:
        with pytest.raises(Exception) as caught:
            plain.get("tls:key")
    assert error_kind(caught.value) == ERROR_CONNECTION


def test_tls_verifies_the_certificate(tls_memcached: cluster.LocalServer, pki: Pki,
                                      tmp_path: Path) -> None:
    """A certificate the CA did not sign, or a name it does not carry, is a connection
    error: the benchmark never talks to an unverified server."""
    other_ca = tmp_path / "other-ca.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", tmp_path / "other.key", "-out", other_ca, "-days", "1",
             "-subj", "/CN=other")
    base = f"memcached+tls://127.0.0.1:{tls_memcached.tls_port}"
    for query in (f"ca={other_ca}", f"ca={pki.ca}&sni=wrong.test"):
        with open_target(parse_target(f"{base}?{query}")) as target:
            with pytest.raises(Exception) as caught:
                target.get("k")
        assert error_kind(caught.value) == ERROR_CONNECTION, query


def test_sni_name_is_sent_and_verified(pki: Pki, tmp_path: Path) -> None:
    """A server whose certificate names only sni.test: reachable at 127.0.0.1 with
    `sni=sni.test`, refused without it."""
    server = cluster.start_memcached(0, tmp_path, tls=pki.sni_only)
    try:
        _round_trip(f"{server.url}&sni=sni.test")
        with open_target(parse_target(server.url)) as target:
            with pytest.raises(Exception) as caught:
                target.get("k")
        assert error_kind(caught.value) == ERROR_CONNECTION
    finally:
        server.stop()


def test_client_certificate(pki: Pki, tmp_path: Path) -> None:
    """A memcached and a Redis that require client certificates take the URL's
    cert=/key= and refuse a client without them."""
    servers = [cluster.start_memcached(0, tmp_path, tls=pki.mutual, name="mc"),
               cluster.start_redis(0, tmp_path, tls=pki.mutual, name="rd")]
    try:
        for server in servers:
            assert "&cert=" in server.url
            _round_trip(server.url)
            without = server.url.split("&cert=")[0]
            with open_target(parse_target(without)) as target:
                with pytest.raises(Exception) as caught:
                    target.set("k", b"v", 0)
                    target.get("k")
            assert error_kind(caught.value) == ERROR_CONNECTION, server.kind
    finally:
        cluster.stop_servers(servers)


def test_redis_acl_user_and_password_over_tls(acl_redis: cluster.LocalServer) -> None:
    host_query = acl_redis.url.split("://", 1)[1]
    _round_trip(f"rediss://bench:{PASSWORD}@{host_query}")
    _round_trip(f"rediss://:{PASSWORD}-default@{host_query}")   # the default user
    with pytest.raises(redis.AuthenticationError):
        _round_trip(f"rediss://bench:wrong@{host_query}")


def test_redis_cluster_over_tls(tls_redis_cluster: cluster.ServerGroup) -> None:
    url = tls_redis_cluster.url
    assert url.startswith("rediss+cluster://")
    with open_target(parse_target(url)) as target:
        items = {f"tls:{i}": str(i).encode() for i in range(50)}   # spread over all slots
        target.set_many(items, 60)
        assert target.get_multi(list(items)) == items
    masters = server_stats(parse_target(url))
    assert len(masters) == 3 and all("error" not in stats for stats in masters.values())


def test_tls_options_are_checked() -> None:
    for url, problem in [("memcached+tls://127.0.0.1:1?ca=/no/such.pem", "no such file"),
                         ("memcached://127.0.0.1:1?ca=/etc/hostname", "unknown option 'ca'"),
                         ("rediss://127.0.0.1:1?sni=x.test", "unknown option 'sni'")]:
        with pytest.raises(InputError, match=problem):
            parse_target(url)


@pytest.mark.slow
def test_wrong_password_is_one_line_and_exit_3(acl_redis: cluster.LocalServer, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    host_query = acl_redis.url.split("://", 1)[1]
    rc = _bench(f"rediss://bench:wrong-{PASSWORD}@{host_query}", tmp_path / "run")
    output = capsys.readouterr()
    assert rc == EXIT_UNREACHABLE
    lines = output.err.strip().splitlines()
    assert len(lines) == 1 and "invalid username-password" in lines[0]
    assert PASSWORD not in output.out + output.err


def _bench(url: str, out: Path) -> int:
    return main(["run", "smoke", "--target", url, "--out", str(out), "--duration", "2s",
                 "--warmup", "0s", "--rate", "500"])


@pytest.mark.slow
def test_no_secret_in_any_output(acl_redis: cluster.LocalServer, pki: Pki,
                                 tmp_path: Path) -> None:
    """A whole `bench run` (its own process, so its argv and terminal are the real ones)
    with a password and a client key: neither the password nor a line of the key's
    contents appears in any file of the run directory (run.json, report, Locust's log
    and output included) or on the terminal."""
    host, _, query = acl_redis.url.split("://", 1)[1].partition("?")
    key = pki.mutual.client_key
    url = (f"rediss://bench:{PASSWORD}@{host}?{query}"
           f"&cert={pki.mutual.client_cert}&key={key}")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "bench", "run", "smoke", "--target", url,
                           "--out", str(out), "--duration", "2s", "--warmup", "0s",
                           "--rate", "500"], capture_output=True, text=True, timeout=120)
    assert done.returncode in or_invalid(0, 1), done.stderr   # completed; no verdict is the point
    key_lines = [line for line in Path(key).read_text().splitlines() if "-----" not in line]
    secrets = [PASSWORD, *key_lines]
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {"run.json", "summary.json", "report.html", "locust.log"} <= {p.name for p in files}
    for path in files:
        content = path.read_bytes().decode(errors="replace")
        assert not [secret for secret in secrets if secret in content], path.name
    assert not [secret for secret in secrets if secret in done.stdout + done.stderr]
    assert "bench:***@" in (out / "run.json").read_text()
