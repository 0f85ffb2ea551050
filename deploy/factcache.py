"""Facts gathered once per host until something changes it.

pyinfra 3 runs a fact's command every time an operation asks for it: a no-change deploy asked
~400 times (File, Sha1File, Directory, SystemdStatus, DebPackages... for each operation), each one
an SSH round trip. A fact can only change when a command runs on its host (the deploy is the only
writer), so an answer stays exact until the next command that is not itself a fact: then every
cached answer of that host is dropped. Facts that move on their own (clocks, live database or
replication state, a backup repository another host writes to) are never cached: only the
classes listed below are.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyinfra.api.host as pyinfra_host
from pyinfra import host as current_host
from pyinfra.api import FactBase, StringCommand
from pyinfra.api.host import Host
from pyinfra.facts.files import Directory
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import files, systemd

# State that only a command changes: files, users, packages, units, the bundle's own such facts.
CACHEABLE = frozenset({
    "pyinfra.facts.files.File", "pyinfra.facts.files.Directory", "pyinfra.facts.files.Link",
    "pyinfra.facts.files.Sha1File", "pyinfra.facts.files.Sha256File",
    "pyinfra.facts.files.Md5File", "pyinfra.facts.files.FileContents",
    "pyinfra.facts.files.FindFiles", "pyinfra.facts.files.FindLinks",
    "pyinfra.facts.files.FindDirectories", "pyinfra.facts.files.FindInFile",
    "pyinfra.facts.server.Users", "pyinfra.facts.server.Groups", "pyinfra.facts.server.Os",
    "pyinfra.facts.server.Hostname", "pyinfra.facts.server.Which",
    "pyinfra.facts.server.LinuxDistribution", "pyinfra.facts.server.Arch",
    "pyinfra.facts.systemd.SystemdStatus", "pyinfra.facts.systemd.SystemdEnabled",
    "pyinfra.facts.deb.DebPackages", "pyinfra.facts.deb.DebArch",
    "pyinfra.facts.apt.AptSources", "pyinfra.facts.apt.AptKeys",
    "deploy.hostfacts.Facts", "deploy.hostfacts.UnitProperty", "deploy.hostfacts.AptCandidate",
    "deploy.postgres.ClusterExists", "deploy.postgres.UserGroups", "deploy.postgres._InContainer",
    "deploy.jobs.EnabledUnits", "deploy.upgrades.InactiveUnits", "deploy.backup.SshHostKey",
    "deploy.uploads.PathStates", "deploy.pgsql.PsqlBatch", "deploy.factcache.Directories",
    "deploy.accounts.AccountFact",
})

_generation: dict[str, int] = {}  # host name -> commands run on it that were not facts
_in_fact: set[str] = set()
_cache: dict[tuple[Any, ...], tuple[int, Any]] = {}
_stats = {"hits": 0, "misses": 0}
# Units that systemd.service operations will ask about, per host: SystemdStatus and
# SystemdEnabled (one unit per operation in pyinfra) are asked for all of them at once.
_units: dict[str, set[str]] = {}
_dirs: dict[str, set[str]] = {}  # likewise the paths of files.directory operations
_UNIT_SUFFIXES = (".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target",
                  ".path", ".timer", ".slice", ".scope")


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_freeze(v) for v in value)
    return value


@contextmanager
def _fact_running(host: Host) -> Iterator[None]:
    nested = host.name in _in_fact
    _in_fact.add(host.name)
    try:
        yield
    finally:
        if not nested:
            _in_fact.discard(host.name)


def _cached_get_fact(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_fact(state: Any, host: Host, cls: type, args: Any = None, kwargs: Any = None,
                 **rest: Any) -> Any:
        if _name(cls) not in CACHEABLE:
            with _fact_running(host):
                return original(state, host, cls, args=args, kwargs=kwargs, **rest)
        path = (kwargs or {}).get("path")
        if cls is Directory and not args and set(kwargs or {}) == {"path"} and path in _dirs.get(
                host.name, ()):
            every = cached(state, host, Directories, (),
                           {"paths": tuple(sorted(_dirs[host.name]))}, rest)
            return copy.copy(every[path])
        one_unit = _one_unit(cls, args, kwargs)
        if one_unit:
            # systemctl shows each unit it is given on its own: one query for all of them.
            units = sorted(_units.get(host.name, set()) | {one_unit})
            every = cached(state, host, cls, (), {"services": units}, rest)
            if one_unit in every:
                return {one_unit: every[one_unit]}
        return cached(state, host, cls, args, kwargs, rest)

    def cached(state: Any, host: Host, cls: type, args: Any, kwargs: Any,
               rest: dict[str, Any]) -> Any:
        key = (host.name, cls, _freeze(args or ()), _freeze(kwargs or {}))
        generation = _generation.get(host.name, 0)
        hit = _cache.get(key)
        if hit is not None and hit[0] == generation:
            _stats["hits"] += 1
            return copy.copy(hit[1])  # operations may edit what they are given
        _stats["misses"] += 1
        with _fact_running(host):
            value = original(state, host, cls, args=args, kwargs=kwargs, **rest)
        _cache[key] = (generation, copy.copy(value))
        return value

    return get_fact


def _one_unit(cls: type, args: Any, kwargs: Any) -> str | None:
    """The unit of a system-manager SystemdStatus/SystemdEnabled question about one unit."""
    if cls not in (SystemdStatus, SystemdEnabled) or args:
        return None
    kwargs = dict(kwargs or {})
    services = kwargs.pop("services", None)
    if any(kwargs.values()) or not isinstance(services, list) or len(services) != 1:
        return None
    return str(services[0])


_END = "__BGDB_END_OF_FACT__"


class Directories(FactBase[dict[str, Any]]):
    """pyinfra's Directory fact for several paths in one command: its own command per path,
    then its own parser on each path's output, with the exit status pyinfra would have seen."""

    paths: tuple[str, ...] = ()

    def command(self, paths: tuple[str, ...]) -> StringCommand:
        self.paths = paths  # pyinfra processes the output with this same instance
        parts: list[Any] = []
        for p in paths:
            parts += ["(", Directory().command(path=p), ")", "2>/dev/null;", "echo", _END, "$?;"]
        return StringCommand(*parts, "true")

    def process(self, output: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        lines: list[str] = []
        answers = iter(self.paths)
        for line in output:
            if not line.startswith(_END + " "):
                lines.append(line)
                continue
            fact = Directory()
            ok = line.split()[-1] == "0"
            found[next(answers)] = fact.process(lines) if ok and lines else fact.default()
            lines = []
        return found


def _registering_dirs(directory_op: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(directory_op)
    def directory(*args: Any, **kwargs: Any) -> Any:
        path = kwargs.get("path", args[0] if args else None)
        if isinstance(path, str):
            _dirs.setdefault(current_host.name, set()).add(path)
        return directory_op(*args, **kwargs)

    return directory


def _registering_units(service_op: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(service_op)
    def service(*args: Any, **kwargs: Any) -> Any:
        unit = kwargs.get("service", args[0] if args else None)
        if isinstance(unit, str) and not any(kwargs.get(k) for k in
                                             ("user_mode", "machine", "user_name")):
            if not unit.endswith(_UNIT_SUFFIXES):
                unit += ".service"
            _units.setdefault(current_host.name, set()).add(unit)
        return service_op(*args, **kwargs)

    return service


def expect_units(units: list[str]) -> None:
    """System units an operation other than systemd.service will ask about one by one."""
    _units.setdefault(current_host.name, set()).update(units)


def _invalidating(method: Callable[..., Any]) -> Callable[..., Any]:
    def run(self: Host, *args: Any, **kwargs: Any) -> Any:
        if self.name not in _in_fact:
            _generation[self.name] = _generation.get(self.name, 0) + 1
        return method(self, *args, **kwargs)

    return run


def install() -> None:
    """Route pyinfra's Host.get_fact through the cache (once per process)."""
    if getattr(pyinfra_host, "_bgdb_factcache", False):
        return
    pyinfra_host.get_fact = _cached_get_fact(pyinfra_host.get_fact)
    Host.run_shell_command = _invalidating(Host.run_shell_command)  # type: ignore[method-assign]
    Host.put_file = _invalidating(Host.put_file)  # type: ignore[method-assign]
    systemd.service = _registering_units(systemd.service)  # type: ignore[assignment]
    files.directory = _registering_dirs(files.directory)  # type: ignore[assignment]
    pyinfra_host._bgdb_factcache = True  # type: ignore[attr-defined]


def stats() -> dict[str, int]:
    return dict(_stats)
