"""Reading the bundle's nftables tables on a host (`nft -j`), for the firewall checks."""

from __future__ import annotations

import json
import re

from bgdb.remote import Target


def port_limited(t: Target, table: str, port: int, allowed_set: str) -> str | None:
    """None when `table` accepts `port` from `@allowed_set` only and rejects it otherwise, else
    what is wrong (one line)."""
    out = t.host.run(f"nft -j list table inet {table}")
    if out.rc != 0:
        return f"{t.name}: nftables table inet {table} is missing: {out.stderr.strip()}"
    rules = [json.dumps(item["rule"]) for item in json.loads(out.stdout)["nftables"]
             if "rule" in item]
    # nftables 1.x writes a one-port set as the port, 0.9 (Debian 11) as {"set": [port]}.
    match = re.compile(rf'"right": ({port}\b|{{"set": \[[^\]]*\b{port}\b)')
    accept = [r for r in rules if match.search(r) and f'"@{allowed_set}"' in r
              and '"accept"' in r]
    reject = [r for r in rules if match.search(r) and '"reject"' in r]
    if not (accept and reject):
        return f"{t.name}: port {port} is not limited to the {allowed_set} set in table " \
               f"inet {table}"
    return None
