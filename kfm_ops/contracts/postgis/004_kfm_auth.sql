-- kfm_auth: operator accounts managed by `kfm-maint user create` (argon2 hashes only).
CREATE SCHEMA IF NOT EXISTS kfm_auth;

CREATE TABLE IF NOT EXISTS kfm_auth.operators (
    username       text PRIMARY KEY CHECK (username ~ '^[a-z][a-z0-9_.-]{1,62}$'),
    role           text NOT NULL CHECK (role IN ('viewer', 'operator', 'maintainer', 'admin')),
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz NOT NULL DEFAULT now()
);
