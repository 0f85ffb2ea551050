"""The metrics endpoint behind optional TLS and basic auth.

/metrics serves either a registry through client_python's WSGI app, or (what ``python3 -m
exporters`` does) a function returning the text exposition: the collector renders its own
families (exporters/exposition.py), gzip-compressed (level 1: cheap) when the client accepts it.

prometheus_client 0.16 (Debian 12) has no TLS or auth in its own server, so this module runs
its WSGI app in a small threading server of our own. TLS handshakes happen in the request's
thread (a slow or broken client cannot stall the accept loop); every connection has a socket
timeout. Paths: /metrics (and /), /healthz (no database work, no auth), anything else 404.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hmac
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry, make_wsgi_app

from exporters.config import ExporterConfig
from exporters.exposition import CONTENT_TYPE

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30.0
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Render = Callable[[], bytes]  # one scrape as text exposition


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(REQUEST_TIMEOUT_SECONDS)
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request from %s failed", client_address, exc_info=True)


def check_basic_auth(header: str | None, username: str, password_bcrypt: str) -> bool:
    """True if an Authorization header carries these credentials. The password is checked
    against its bcrypt hash once per distinct header (bcrypt costs ~0.1-0.3 s by design);
    exporter-toolkit caches the same way, so a scrape every 15 s does not pay it again."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    ok_pass = _bcrypt_matches(password, password_bcrypt)
    # Both compared, always: no early exit that tells a valid user name apart.
    ok_user = hmac.compare_digest(user.encode("utf-8"), username.encode("utf-8"))
    return ok_user and ok_pass


@functools.lru_cache(maxsize=64)
def _bcrypt_matches(password: str, password_bcrypt: str) -> bool:
    try:
        return bool(bcrypt.checkpw(password.encode("utf-8"), password_bcrypt.encode("ascii")))
    except ValueError:
        return False


def gzip_accepted(header: str | None) -> bool:
    return any(part.split(";", 1)[0].strip().lower() == "gzip"
               for part in (header or "").split(","))


def render_app(render: Render) -> WsgiApp:
    """/metrics from a function that returns the text exposition (format 0.0.4)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = render()
        headers = [("Content-Type", CONTENT_TYPE)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING")):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    return app


def build_app(source: CollectorRegistry | Render, cfg: ExporterConfig) -> WsgiApp:
    if isinstance(source, CollectorRegistry):
        metrics_app = make_wsgi_app(source)
    else:
        metrics_app = render_app(source)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if cfg.basic_auth_username and cfg.basic_auth_password_bcrypt:
            header = environ.get("HTTP_AUTHORIZATION")
            if not check_basic_auth(
                header, cfg.basic_auth_username, cfg.basic_auth_password_bcrypt
            ):
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain"),
                     ("WWW-Authenticate", 'Basic realm="bgdb-exporter"')],
                )
                return [b"unauthorized\n"]
        if path in ("/", "/metrics"):
            return metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def start_server(source: CollectorRegistry | Render, cfg: ExporterConfig) -> MetricsServer:
    """Bind and serve ``source`` (a registry, or a function returning the exposition) in a
    daemon thread; call .shutdown() and .server_close() to stop."""
    family = socket.getaddrinfo(cfg.listen_address, cfg.port, type=socket.SOCK_STREAM)[0][0]

    class _Server(MetricsServer):
        address_family = family

    server = make_server(
        cfg.listen_address, cfg.port, build_app(source, cfg), _Server, _QuietHandler
    )
    assert isinstance(server, MetricsServer)
    if cfg.tls_cert_file and cfg.tls_key_file:
        server.ssl_context = tls_context(cfg.tls_cert_file, cfg.tls_key_file)
    thread = threading.Thread(target=server.serve_forever, name="bgdb-exporter-http", daemon=True)
    thread.start()
    return server
