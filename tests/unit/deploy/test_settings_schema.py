"""The schema of settings: every key refuses a bad value with one line naming key, value and
source, whatever its kind; defaults live only there; the reference is generated from it."""

from __future__ import annotations

import pytest

from deploy import settings_doc
from deploy.hostdata import GROUP_DATA, InventoryHost, load_group_data
from deploy.settings_schema import (
    KEYS,
    KEYS_LIST,
    Address,
    Addresses,
    AuditClasses,
    Choice,
    Cidrs,
    Data,
    File,
    Flag,
    HostName,
    Ident,
    Idents,
    Int,
    Key,
    Overrides,
    Pattern,
    SettingsError,
    Strings,
)
from deploy.validate import validate_hosts

BASE = {"postgres_allowed_cidrs": ["10.0.0.0/24"]}
SOURCE = "hosts.json host db1"


def bad_value(key: Key) -> object:
    """A value the key's kind must refuse (a new kind needs its line here)."""
    kind = key.kind
    if isinstance(kind, Int):
        return kind.hi + 1
    samples: dict[type, object] = {
        Choice: "nonsense", Flag: "yes", Ident: "Bad-Name", Idents: ["Bad Name"],
        Strings: "not a list", Cidrs: ["10.0.0.1/33"], Addresses: ["*"], Address: "eth0",
        HostName: "bad host!", Pattern: "x;\ny z", File: "/nonexistent/file.pem",
        AuditClasses: ["nonsense"], Overrides: "work_mem=16MB",
    }
    return samples[type(kind)]


@pytest.mark.parametrize("key", KEYS_LIST, ids=lambda k: k.name)
def test_every_key_refuses_a_bad_value(key: Key) -> None:
    value = bad_value(key)
    host = InventoryHost("db1", "10.0.0.5", ("postgres_primary",), {**BASE, key.name: value},
                         {key.name: SOURCE})
    with pytest.raises(SettingsError) as err:
        validate_hosts([host])
    message = str(err.value)
    assert err.value.key == key.name, message
    assert f"(from {SOURCE}): " in message
    assert "\n" not in message
    assert message.startswith(f"settings error: {key.name} = ")


@pytest.mark.parametrize("key", [k for k in KEYS_LIST if k.env], ids=lambda k: k.name)
def test_an_environment_variable_is_named_as_the_source(key: Key) -> None:
    value = "bad value!"
    with pytest.raises(SettingsError) as err:
        Data(BASE, env={key.env or "": value}).get(key.name)
    assert str(err.value).startswith(f"settings error: {key.name} = 'bad value!' "
                                     f"(from {key.env}): ")


@pytest.mark.parametrize("key", KEYS_LIST, ids=lambda k: k.name)
def test_every_default_is_valid(key: Key) -> None:
    if isinstance(key.kind, Cidrs) and key.kind.required:  # no default: the operator's choice
        with pytest.raises(SettingsError, match="expected at least one CIDR"):
            key.kind.parse(key.name, key.default, None)
    elif key.default is not None:
        key.kind.parse(key.name, key.default, None)


def test_defaults_are_written_once() -> None:
    # group_data declares no key: its files are for the operator's own values.
    for path in GROUP_DATA.glob("*.py"):
        assert load_group_data(path.stem) == {}, path


def test_the_settings_reference_is_up_to_date() -> None:
    assert settings_doc.DOC.read_text() == settings_doc.render(), \
        "docs/settings.md is out of date: run python -m deploy.settings_doc"
    for key in KEYS:
        assert f"| `{key}` |" in settings_doc.render()


def test_reading_an_undeclared_key_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="not declared in deploy/settings_schema.py"):
        Data(BASE, env={}).get("postgres_undeclared")
