# Runs inside a chroot with postgresql-<major> installed (generate.sh copies it in): a throwaway
# cluster with pg_stat_statements loaded, its pg_settings as JSON on /tmp/pg_settings.json.
set -eu
major=$1
bin=/usr/lib/postgresql/$major/bin
data=/tmp/pgdata
mkdir -p "$data" && chown postgres "$data"
as_pg() { su postgres -s /bin/sh -c "$1"; }
as_pg "$bin/initdb -D $data -A trust >/dev/null"
as_pg "$bin/pg_ctl -D $data -w -l /tmp/pg.log -o \"-c listen_addresses='' \
  -c unix_socket_directories=/tmp -c shared_preload_libraries=pg_stat_statements \
  -c dynamic_shared_memory_type=mmap\" start >/dev/null"
as_pg "$bin/psql -h /tmp -d postgres -AtX" >/tmp/pg_settings.json <<'SQL'
SELECT '{"server_version": ' || to_json(current_setting('server_version'))
  || E',\n "columns": ["name", "vartype", "unit", "min_val", "max_val", "enumvals", "context"],'
  || E'\n "settings": [\n'
  || string_agg(json_build_array(name, vartype, unit, min_val, max_val, enumvals, context)::text,
                E',\n' ORDER BY name)
  || E'\n]}'
FROM pg_settings;
SQL
as_pg "$bin/pg_ctl -D $data -w stop >/dev/null"
