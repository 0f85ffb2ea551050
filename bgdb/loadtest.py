"""`bgdb loadtest`: bench/load_agents.py against the inventory's primary (in HA mode: the
agents' one address, on the leader), through PgBouncer as the agents connect (TLS verify-full,
the application role), recording the evidence the readiness check "load testing completed"
reads. The password is read from the secrets and handed to the benchmark in-process: it is on
no command line.

The benchmark's own rules hold (bgdb/loadtest_guard.py): only a database host of the inventory,
--confirm-existing-data before loading a primary that holds other agents, and the run's rows are
removed when it ends, also when interrupted; --cleanup removes what a killed run left."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bgdb import connect
from bgdb.loadtest_guard import CONFIRM_FLAG
from bgdb.targets import OperatorError
from deploy import secrets
from deploy.hostdata import InventoryHost
from deploy.settings import Data, ha_settings

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench" / "load_agents.py"


def _bench() -> ModuleType:
    # bench/ holds scripts, not a package: load the benchmark from its file.
    spec = importlib.util.spec_from_file_location("bgdb_load_agents", BENCH)
    if spec is None or spec.loader is None:
        raise OperatorError(f"cannot load {BENCH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def target_dsn(inv: InventoryHost) -> str:
    ep = connect.endpoint(inv, "app", "pgbouncer")
    ha = ha_settings(Data(inv.data))
    if ha.enabled and ha.vip:  # HA mode: the agents' one address, wherever the leader is
        ep = replace(ep, host=ha.vip)
    password = secrets.password(ep.user, env=ep.password_env, generate=False)
    params = conninfo_to_dict(ep.dsn(secrets.secrets_dir() / "ca" / "ca.crt"))
    params.pop("application_name", None)  # the benchmark names its own sessions
    return make_conninfo(**params, password=password)  # type: ignore[arg-type]


def run(inv: InventoryHost, agents: str, duration: float, evidence: Path | None, *,
        confirm_existing_data: bool = False, cleanup: bool = False) -> int:
    argv = ["--target", f"pgbouncer={target_dsn(inv)}", "--agents", agents,
            "--duration", str(duration)]
    if evidence is not None:
        argv += ["--evidence", str(evidence)]
    if confirm_existing_data:
        argv.append(CONFIRM_FLAG)
    if cleanup:
        argv.append("--cleanup")
    return int(_bench().main(argv))
