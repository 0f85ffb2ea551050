"""Your data for every host. Empty: every key has its default.

Set any key of docs/settings.md here, e.g. `postgres_allowed_cidrs = ["10.0.2.0/24"]`; a group's
file (group_data/<group>.py), a host's "data" in the hosts file and BGDB_EXTRA_DATA win over it.
Types, defaults and allowed values are declared once, in deploy/settings_schema.py (the reference,
docs/settings.md, is generated from it); an unknown key is an error, with a "did you mean".

Secrets never go here: passwords come from the environment (POSTGRESQL_PASSWORD for the
application role) or the gitignored secrets directory, where the bundle generates them.
"""
