"""``python3 -m exporters``: serve the metrics until SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from exporters.collector import BgdbCollector
from exporters.config import ConfigError, load_config
from exporters.http import start_server

log = logging.getLogger("exporters")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"bgdb-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    registry = CollectorRegistry()
    try:
        collector = BgdbCollector(cfg)
    except (OSError, ValueError) as exc:
        print(f"bgdb-exporter: cannot start: {exc}", file=sys.stderr)
        return 2
    registry.register(collector)  # checks the metric names once (describe)
    # One scrape before listening: connecting, planning the batch over every partition, the
    # catalog caches of a new backend and the sizes walk (~150 ms at 10 M heartbeats) are paid
    # here, not by Prometheus's first scrape; the latency histogram gets its baseline. Bounded
    # like any scrape; a database that is down just makes it quick.
    started = time.monotonic()
    collector.scrape()
    log.info("first scrape (at start) took %.0f ms", (time.monotonic() - started) * 1000)
    # What exists now (modules, connections, caches) lives as long as the process: frozen out
    # of the cyclic collector, whose full collections otherwise walk those ~70,000 objects
    # (~30 ms, a scrape's CPU several times over, every hundred scrapes or so); a scrape's own
    # objects are acyclic and go by reference counting.
    gc.freeze()
    process = CollectorRegistry()
    ProcessCollector(registry=process)

    def render() -> bytes:
        # Our families through our own writer; the process metrics (a handful) the usual way.
        return collector.exposition() + generate_latest(process)

    try:
        server = start_server(render, cfg)
    except OSError as exc:
        print(f"bgdb-exporter: cannot listen on {cfg.listen_address}:{cfg.port}: {exc}",
              file=sys.stderr)
        collector.close()
        return 1
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheme = "https" if cfg.tls_cert_file else "http"
    log.info("serving %s://%s:%d/metrics", scheme, cfg.listen_address, cfg.port)
    stop.wait()
    log.info("stopping")
    server.shutdown()
    server.server_close()
    collector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
