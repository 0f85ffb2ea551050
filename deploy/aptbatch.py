"""One apt-get install for most of a host's packages: a drop-in for apt.packages.

Each apt-get run pays for reading the package lists and the dpkg database and for running the
triggers again (~0.5 s here, more on a busy host); the deploy installed its packages in nine
runs. Packages declared with `batch=True` are recorded per host when their operation is declared
(before any operation runs), and the first such operation to run installs all of them at once;
the later ones find theirs installed and change nothing. Packages whose install must come after
something else stay with apt.packages: a service that has to start with files written before it
(Prometheus, the node exporter), or unattended-upgrades (it would upgrade with Debian's defaults,
PostgreSQL included, until its configuration is written).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pyinfra import host
from pyinfra.api import operation
from pyinfra.operations import apt

_BATCH: dict[str, list[str]] = {}  # host name -> packages any batched operation installs


def merged(own: list[str], planned: list[str]) -> list[str]:
    """An operation's own packages first, then the host's other batched ones, once each."""
    return list(dict.fromkeys([*own, *planned]))


@operation()
def _packages(packages: list[str], batched: bool, update: bool, cache_time: int | None,
              no_recommends: bool) -> Generator[Any, None, None]:
    wanted = merged(packages, _BATCH.get(host.name, [])) if batched else packages
    yield from apt.packages._inner(packages=wanted, update=update, cache_time=cache_time,
                                   no_recommends=no_recommends)


def install(*, name: str, packages: list[str], batch: bool = True, update: bool = False,
            cache_time: int | None = None, no_recommends: bool = False, **op_args: Any) -> Any:
    """apt.packages(packages=..., present) with its change semantics for these packages; with
    batch=True the host's other batched packages come along on the first one that runs."""
    if op_args.get("_if") is not None:
        batch = False  # a conditional install must not be pulled forward by another one
    if batch:
        _BATCH[host.name] = merged(_BATCH.get(host.name, []), packages)
    return _packages(name=name, packages=list(packages), batched=batch, update=update,
                     cache_time=cache_time, no_recommends=no_recommends, **op_args)
