"""A database that is down or hangs gives bgdb_up 0 within the timeout while the endpoint keeps
answering; the exporter reconnects by itself; the endpoint's TLS and basic auth; the CLI."""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from exporters.config import build_config
from exporters.http import start_server

from .conftest import CollectorFactory, Scrape, free_port, with_params

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def get(url: str, headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class FreezableProxy:
    """A TCP relay to the database that can stop relaying: a server that hangs."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            self._socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.02)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.frozen.clear()
        self.listener.close()
        for s in self._socks:
            s.close()


@pytest.fixture
def proxy(monitor_dsn: str) -> Iterator[FreezableProxy]:
    params = psycopg.conninfo.conninfo_to_dict(monitor_dsn)
    host = str(params.get("host") or "")
    if not host or host.startswith("/"):
        pytest.skip("needs a TCP DSN")
    p = FreezableProxy(host, int(params.get("port") or 5432))
    yield p
    p.close()


def test_database_down_gives_up_0_and_the_endpoint_answers(
    make_collector: CollectorFactory,
) -> None:
    closed = free_port()  # nothing listens there
    collector, registry = make_collector(
        dsn=f"host=127.0.0.1 port={closed} dbname=agents user=bg_agents_monitor",
        statement_timeout_seconds=1)
    started = time.monotonic()
    s = Scrape(registry)
    assert time.monotonic() - started < 3
    assert s.get("bgdb_up") == 0
    assert s.get("bgdb_exporter_connect_errors_total", {"target": "postgres"}) == 1
    assert s.get("bgdb_exporter_query_errors_total", {"query": "server"}) == 0
    assert s.get("bgdb_pg_max_connections") is None
    assert s.get("bgdb_exporter_scrapes_total") == 1

    cfg = build_config({"listen_address": "127.0.0.1", "port": free_port(),
                        "dsn": collector.cfg.dsn})
    server = start_server(registry, cfg)
    try:
        base = f"http://127.0.0.1:{cfg.port}"
        for _ in range(2):  # answers again and again
            status, body = get(base + "/metrics")
            assert status == 200
            assert "bgdb_up 0.0" in body
            assert "bgdb_exporter_connect_errors_total" in body
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_hung_database_gives_up_0_within_the_timeout_then_recovers(
    monitor_dsn: str, make_collector: CollectorFactory, proxy: FreezableProxy
) -> None:
    sslmode = psycopg.conninfo.conninfo_to_dict(monitor_dsn).get("sslmode")
    dsn = with_params(monitor_dsn, host="127.0.0.1", port=proxy.port,
                      sslmode="require" if str(sslmode).startswith("verify") else sslmode)
    _, registry = make_collector(dsn=dsn, statement_timeout_seconds=1)
    assert Scrape(registry).get("bgdb_up") == 1

    proxy.frozen.set()  # the open connection stops answering mid-conversation
    started = time.monotonic()
    s = Scrape(registry)
    elapsed = time.monotonic() - started
    assert s.get("bgdb_up") == 0
    assert elapsed < 1 + 2 + 1.5  # statement_timeout + watchdog grace + slack
    # Still hung: a new connection cannot even start; up 0 again within connect_timeout.
    started = time.monotonic()
    assert Scrape(registry).get("bgdb_up") == 0
    assert time.monotonic() - started < 2 + 1.5

    proxy.frozen.clear()
    s = Scrape(registry)
    assert s.get("bgdb_up") == 1
    assert s.get("bgdb_pg_max_connections") is not None
    assert (s.get("bgdb_exporter_connections_total", {"target": "postgres"}) or 0) >= 2


def test_reconnects_after_its_backend_is_terminated(
    agents_dsn: str, make_collector: CollectorFactory
) -> None:
    _, registry = make_collector()
    assert Scrape(registry).get("bgdb_up") == 1
    with psycopg.connect(agents_dsn, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'bgdb-exporter' AND datname = current_database()"
        ).fetchone()
    assert killed == (1,)
    s = Scrape(registry)
    assert s.get("bgdb_up") == 1  # the stale connection was replaced within the scrape
    assert s.get("bgdb_exporter_connections_total", {"target": "postgres"}) == 2
    assert s.get("bgdb_exporter_query_errors_total", {"query": "server"}) == 0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_endpoint_with_tls_and_basic_auth(
    monitor_dsn: str, make_collector: CollectorFactory, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    settings = {
        "listen_address": "127.0.0.1", "port": free_port(), "dsn": monitor_dsn,
        "tls_cert_file": str(cert), "tls_key_file": str(key),
        "basic_auth_username": "prometheus",
        "basic_auth_password_bcrypt": bcrypt.hashpw(b"pa55word", bcrypt.gensalt(4)).decode(),
    }
    _, registry = make_collector()
    cfg = build_config(settings)
    server = start_server(registry, cfg)
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{cfg.port}/metrics"
    good = {"Authorization": "Basic " + base64.b64encode(b"prometheus:pa55word").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"prometheus:guess").decode()}
    try:
        assert get(url, context=ctx)[0] == 401
        assert get(url, bad, context=ctx)[0] == 401
        status, body = get(url, good, context=ctx)
        assert status == 200 and "bgdb_up 1.0" in body
        # Plain HTTP on the TLS port gets nothing, and the server keeps serving TLS.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{cfg.port}/metrics", timeout=5)
        assert get(url, good, context=ctx)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_cli_serves_and_stops_on_sigterm(monitor_dsn: str, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text('{"listen_address": "127.0.0.1", "heartbeat_interval_seconds": 30}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporters", "--config", str(config), "--port", str(port),
         "--dsn", monitor_dsn],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = ""
        for _ in range(100):
            try:
                status, body = get(f"http://127.0.0.1:{port}/metrics")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert "bgdb_up 1.0" in body
        assert "bgdb_exporter_heartbeat_interval_seconds 30.0" in body
        assert "process_resident_memory_bytes" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert "first scrape (at start) took" in proc.stdout.read()  # before it listened
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_bad_settings() -> None:
    res = subprocess.run([sys.executable, "-m", "exporters", "--port", "99999"], cwd=REPO,
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2
    assert "port" in res.stderr


PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _run_as() -> str | None:
    """PgBouncer refuses to run as root: as root, run it as the postgres OS user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and no postgres OS user to run pgbouncer as")
    return "postgres"


@pytest.mark.skipif(not os.path.exists(PGBOUNCER), reason="pgbouncer is not installed")
def test_pgbouncer_pools(agents_dsn: str, make_collector: CollectorFactory) -> None:
    params = psycopg.conninfo.conninfo_to_dict(agents_dsn)
    port = free_port()
    user = str(params.get("user") or "postgres")
    run_as = _run_as()
    workdir = Path(tempfile.mkdtemp(prefix="bgdb-pgbouncer-"))
    backend = " ".join(f"{k}={v}" for k, v in params.items()
                       if k in ("host", "port", "dbname", "user", "password"))
    tls = ""
    if params.get("sslmode"):
        tls += f"server_tls_sslmode = {params['sslmode']}\n"
    if params.get("sslrootcert"):
        shutil.copy(str(params["sslrootcert"]), workdir / "ca.crt")
        tls += f"server_tls_ca_file = {workdir}/ca.crt\n"
    (workdir / "pgbouncer.ini").write_text(f"""[databases]
agents = {backend} pool_size=4

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
admin_users = {user}
stats_users = {user}
pool_mode = transaction
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
{tls}""")
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    cmd = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if run_as:
        for path in (workdir, *workdir.iterdir()):
            shutil.chown(path, run_as)
        cmd = [PGBOUNCER, "-u", run_as, str(workdir / "pgbouncer.ini")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    admin = f"host=127.0.0.1 port={port} dbname=pgbouncer user={user}"
    client_dsn = f"host=127.0.0.1 port={port} dbname=agents user={user}"
    try:
        for _ in range(100):
            try:
                psycopg.connect(admin, autocommit=True).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        _, registry = make_collector(pgbouncer_dsn=admin)
        # Hold one server connection in a transaction through the pool.
        with psycopg.connect(client_dsn, prepare_threshold=None) as client:
            client.execute("SELECT 1")
            s = Scrape(registry)
        pool = {"database": "agents", "user": user}
        assert s.get("bgdb_pgbouncer_up") == 1
        assert s.get("bgdb_pgbouncer_pool_client_active", pool) == 1
        assert s.get("bgdb_pgbouncer_pool_server_active", pool) == 1
        assert s.get("bgdb_pgbouncer_pool_client_waiting", pool) == 0
        assert s.get("bgdb_pgbouncer_database_pool_size", {"database": "agents"}) == 4
        assert s.labels("bgdb_pgbouncer_pool_server_active") == [pool]  # admin db left out
        assert s.get("bgdb_exporter_query_errors_total", {"query": "pgbouncer_stats"}) == 0
        assert s.get("bgdb_up") == 1
        # PgBouncer gone: its metrics say so, PostgreSQL's do not change.
        proc.terminate()
        proc.wait(timeout=10)
        s = Scrape(registry)
        assert s.get("bgdb_pgbouncer_up") == 0
        assert s.get("bgdb_up") == 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_endpoint_serves_the_collectors_own_exposition(make_collector: CollectorFactory) -> None:
    # What `python3 -m exporters` serves: the collector's families through exporters/exposition
    # (gzip when asked), read back by client_python's parser: the same series as collect().
    collector, registry = make_collector()
    expected = set(Scrape(registry).samples)
    cfg = build_config({"listen_address": "127.0.0.1", "port": free_port(),
                        "dsn": collector.cfg.dsn})
    server = start_server(collector.exposition, cfg)
    try:
        url = f"http://127.0.0.1:{cfg.port}/metrics"
        with urllib.request.urlopen(url, timeout=15) as resp:
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            body = resp.read().decode()
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=15) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            zipped = gzip.decompress(resp.read()).decode()
    finally:
        server.shutdown()
        server.server_close()
    # Backends by state vary from scrape to scrape (the exporter's own second connection is
    # idle or not at that moment): that family is compared by name, every other series exactly.
    def stable(series: set[tuple[str, frozenset[tuple[str, str]]]]) -> set[object]:
        return {name if name == "bgdb_pg_connections" else (name, labels)
                for name, labels in series}

    for text in (body, zipped):
        got = {(s.name, frozenset(s.labels.items()))
               for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert stable(got) == stable(expected)
    assert "bgdb_up 1.0\n" in body
