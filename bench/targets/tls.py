"""TLS settings of a target URL, turned into what each client library takes.

Why one module: the same four URL options (`ca`, `cert`, `key`, `sni`) mean the same
thing for memcached (pymemcache wants an `ssl.SSLContext`) and Redis (redis-py wants
`ssl_*` keywords and builds its own context). The certificate is always verified
against the CA (the system's store without `ca=`) and the host name (or the `sni=` name)
checked: a benchmark over TLS that silently accepted any certificate would measure a
connection nobody runs in production.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

#: URL options that only TLS schemes take, and what each one names.
TLS_OPTIONS = {"ca": "a PEM file of CA certificates that signed the server's",
               "cert": "a PEM client certificate (with key=, unless it holds the key)",
               "key": "the PEM private key of cert=",
               "sni": "the server name to send and to verify instead of the URL's host"}


class _NamedContext(ssl.SSLContext):
    """A client context that sends and verifies `server_name` whatever host the client
    connected to (pymemcache passes the address it dialled, e.g. 127.0.0.1)."""

    server_name: str | None = None

    def wrap_socket(self, sock: socket.socket, *args: Any, server_hostname: str | None = None,
                    **kwargs: Any) -> ssl.SSLSocket:
        return super().wrap_socket(sock, *args, server_hostname=self.server_name or server_hostname,
                                   **kwargs)


def client_context(options: dict[str, Any]) -> ssl.SSLContext:
    """A verifying client context from a TLS target's parsed options."""
    context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)   # CERT_REQUIRED, check_hostname
    if options.get("ca"):
        context.load_verify_locations(cafile=options["ca"])
    else:
        context.load_default_certs()
    if options.get("cert"):
        context.load_cert_chain(options["cert"], options.get("key"))
    context.server_name = options.get("sni")
    return context


def redis_keywords(options: dict[str, Any]) -> dict[str, Any]:
    """redis-py's keywords for the same settings (redis-py always sends the URL's host,
    which is why `sni` is refused for Redis when the URL is parsed)."""
    return {"ssl": True, "ssl_ca_certs": options.get("ca"), "ssl_certfile": options.get("cert"),
            "ssl_keyfile": options.get("key"), "ssl_cert_reqs": "required",
            "ssl_check_hostname": True}
