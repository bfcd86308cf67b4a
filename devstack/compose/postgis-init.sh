#!/bin/sh
# docker-compose route: runs once in the postgis container's first start (docker-entrypoint-initdb.d),
# as the postgres OS user over the unix socket. Same roles, database, schemas and grants as devstack/stack.
# psql reads its variables from the environment with \getenv (psql 15+) and the SQL on stdin:
# no password is on its command line.
set -eu
{
  printf '%s\n' '\getenv db DEVSTACK_PG_DATABASE' '\getenv owner DEVSTACK_PG_OWNER' \
    '\getenv owner_pw DEVSTACK_PG_OWNER_PASSWORD' '\getenv reader DEVSTACK_PG_READER' \
    '\getenv reader_pw DEVSTACK_PG_READER_PASSWORD'
  cat /devstack/bootstrap.sql
} | psql -X -v ON_ERROR_STOP=1 --username postgres --dbname postgres -f -
# like devstack: the superuser only via peer on the socket; everyone else with a scram-sha-256 password
cat > "$PGDATA/pg_hba.conf" <<HBA
local   all   postgres   peer
local   all   all        scram-sha-256
host    all   postgres   all   reject
host    all   all        all   scram-sha-256
HBA
echo "max_connections = 100" >> "$PGDATA/postgresql.conf"
