#!/bin/sh
# docker-compose route: Redis with the same passwords, ACL user and memory bound as devstack/stack.
# The passwords come from the environment and go into a config file that is created private
# (umask 077: mode 0600), never onto redis-server's command line.
set -eu
umask 077
conf="$(mktemp)"
cat > "$conf" <<CONF
requirepass ${DEVSTACK_REDIS_PASSWORD:?}
user ${DEVSTACK_REDIS_READER:?} on >${DEVSTACK_REDIS_READER_PASSWORD:?} ~* &* -@all +@read +@connection -@write -@dangerous +info +ping +memory|usage
maxmemory 256mb
maxmemory-policy volatile-lru
CONF
exec redis-server "$conf"
