#!/bin/sh
# Rebuild <major>.json (pg_settings of each Debian suite's PostgreSQL) from the real binaries:
# a throwaway mmdebstrap chroot per suite, postgresql-<major> from Debian, initdb, one query.
# Needs root and mmdebstrap; ~2 min per suite. Usage: generate.sh [suite:major ...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mirror=${BGDB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
for pair in ${*:-bullseye:13 bookworm:15 trixie:17}; do
    suite=${pair%:*}
    major=${pair#*:}
    mmdebstrap --variant=apt --quiet --include="postgresql-$major" \
        --customize-hook="copy-in $here/query.sh /tmp" \
        --customize-hook="chroot \"\$1\" sh /tmp/query.sh $major" \
        --customize-hook="copy-out /tmp/pg_settings.json /tmp" \
        "$suite" /dev/null "deb $mirror $suite main"
    mv /tmp/pg_settings.json "$here/$major.json"
    echo "$suite: PostgreSQL $major -> $here/$major.json"
done
