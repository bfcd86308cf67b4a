#!/bin/sh
# docker-compose route: runs once in the postgis container's first start (docker-entrypoint-initdb.d),
# as the postgres OS user over the unix socket. Same roles, database, schemas and grants as devstack/stack.
set -eu
psql -X -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
  -v db="$DEVSTACK_PG_DATABASE" \
  -v owner="$DEVSTACK_PG_OWNER" -v owner_pw="$DEVSTACK_PG_OWNER_PASSWORD" \
  -v reader="$DEVSTACK_PG_READER" -v reader_pw="$DEVSTACK_PG_READER_PASSWORD" \
  -f /devstack/bootstrap.sql
# like devstack: the superuser only via peer on the socket; everyone else with a scram-sha-256 password
cat > "$PGDATA/pg_hba.conf" <<HBA
local   all   postgres   peer
local   all   all        scram-sha-256
host    all   postgres   all   reject
host    all   all        all   scram-sha-256
HBA
echo "max_connections = 100" >> "$PGDATA/postgresql.conf"
