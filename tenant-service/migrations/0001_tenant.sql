-- The tenant's own database: its service's starts, its identity realm as the platform
-- handed it over, its users and its settings. Applied by the service at start-up and by
-- the platform before it writes the realm, so either may come first.

-- One row per copy of the service that took the lock.
CREATE TABLE IF NOT EXISTS service_starts (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    pid         integer NOT NULL
);

-- The realm's signing key, copied from the control plane at deploy. One row.
CREATE TABLE realm (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_id        text NOT NULL,
    private_key   text NOT NULL,
    public_jwk    jsonb NOT NULL,
    installed_at  timestamptz NOT NULL DEFAULT now()
);

-- Invitations: only the SHA-256 of a code is kept. The platform writes the grant (email,
-- expiry); the service records the redemption. A re-issued invitation revokes the older
-- codes that were never redeemed.
CREATE TABLE invitations (
    code_sha256  bytea PRIMARY KEY,
    email        text NOT NULL,
    expires_at   timestamptz NOT NULL,
    redeemed_at  timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    email          text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'member')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Settings the platform writes. One row.
CREATE TABLE tenant_settings (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    suspended   boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenant_settings (singleton) VALUES (true);
