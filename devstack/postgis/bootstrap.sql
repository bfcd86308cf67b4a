-- devstack: roles, database, extension, schemas and grants of the local PostGIS.
-- Run by devstack/stack as the superuser over the unix socket on every start; idempotent.
-- psql variables: db, owner, owner_pw, reader, reader_pw. The callers set them with \getenv from
-- psql's environment, never with -v on its command line (devstack passes SCRAM verifiers as the
-- passwords, so the server never sees them in clear; the compose init script passes the passwords).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET password_encryption = 'scram-sha-256';

SELECT format('CREATE ROLE %I LOGIN', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reader')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"owner" LOGIN NOSUPERUSER NOCREATEROLE PASSWORD :'owner_pw';
-- REPLICATION: the actions' role reads the canonical changes from its logical slot (`kfm-maint sync`
-- with KFM_POSTGIS__CHANGE_SLOT; docs/security.md says what the attribute lets a role read).
ALTER ROLE :"owner" REPLICATION;
ALTER ROLE :"reader" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_pw';
ALTER ROLE :"reader" SET default_transaction_read_only = on;

SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec

\connect :"db"
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CREATE, USAGE ON SCHEMA public TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"owner";
GRANT CONNECT ON DATABASE :"db" TO :"reader";

CREATE SCHEMA IF NOT EXISTS kfm AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS kfm_cache AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS kfm_ops AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS kfm_auth AUTHORIZATION :"owner";

GRANT USAGE ON SCHEMA public, kfm, kfm_cache, kfm_ops, kfm_auth TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public, kfm, kfm_cache, kfm_ops TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public, kfm, kfm_cache, kfm_ops
  GRANT SELECT ON TABLES TO :"reader";
-- kfm_auth holds the operators' password hashes: only the owner reads them (kfm-maint user create
-- compares through an owner session). Revoked again here for stacks bootstrapped before.
REVOKE SELECT ON ALL TABLES IN SCHEMA kfm_auth FROM :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA kfm_auth REVOKE SELECT ON TABLES FROM :"reader";

-- The checks' role watches sessions, locks and replication of every role: pg_read_all_stats lets
-- it read pg_stat_activity and friends in full (without it other roles' rows show NULL states).
-- The narrowest grant that does (pg_monitor adds settings and scan functions it does not need).
GRANT pg_read_all_stats TO :"reader";
REVOKE pg_monitor FROM :"reader";

-- The local owner may reset the statistics: `python -m bench.run` reads million-item catalogs
-- from disk and then resets them, so the cache-hit check measures the stack, not the bench.
GRANT EXECUTE ON FUNCTION pg_stat_reset() TO :"owner";
