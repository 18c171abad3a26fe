-- The control-plane store: who may act, which plans exist, which tenants exist and in
-- which state, what each tenant holds, and everything that happened to it.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE principals (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    platform_operator  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    principal_id  uuid NOT NULL REFERENCES principals(id),
    org_id        uuid NOT NULL REFERENCES organizations(id),
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    PRIMARY KEY (principal_id, org_id)
);

-- Only the SHA-256 of a token is kept; the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    principal_id  uuid NOT NULL REFERENCES principals(id),
    name          text NOT NULL,
    token_sha256  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);

CREATE TABLE plans (
    name                 text PRIMARY KEY,
    display_name         text NOT NULL,
    max_tenants_per_org  integer NOT NULL,
    db_connection_limit  integer NOT NULL
);

INSERT INTO plans (name, display_name, max_tenants_per_org, db_connection_limit) VALUES
    ('free', 'Free', 3, 5),
    ('growth', 'Growth', 25, 20),
    ('enterprise', 'Enterprise', 1000, 50);

-- One row per tenant id (a pure function of org and slug). A decommissioned tenant keeps
-- its row; provisioning the key again bumps `incarnation` on the same row.
CREATE TABLE tenants (
    id                 uuid PRIMARY KEY,
    org_slug           text NOT NULL,
    slug               text NOT NULL,
    label              text NOT NULL,
    host               text NOT NULL,
    name               text NOT NULL,
    plan               text NOT NULL REFERENCES plans(name),
    first_admin_email  text NOT NULL,
    state              text NOT NULL,
    phase              text,
    incarnation        integer NOT NULL DEFAULT 1,
    workflow_id        text NOT NULL,
    run_id             text,
    requested_by       text NOT NULL,
    last_error         jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_slug, slug)
);

-- The host name label is reserved by one tenant at a time: `<slug>-<org>` is ambiguous.
CREATE UNIQUE INDEX tenants_label_held ON tenants (label) WHERE state <> 'decommissioned';
CREATE INDEX tenants_org_state ON tenants (org_slug, state);

-- The ledger: every resource allocated in a tenant's name, and when it was released.
CREATE TABLE resources (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    incarnation   integer NOT NULL,
    kind          text NOT NULL,
    name          text NOT NULL,
    allocated_at  timestamptz NOT NULL DEFAULT now(),
    released_at   timestamptz
);
-- At most one live allocation of each kind per tenant; released rows stay as history.
CREATE UNIQUE INDEX resources_live ON resources (tenant_id, kind) WHERE released_at IS NULL;

-- The audit feed, append-only. `event_key` makes a retried write land once.
CREATE TABLE audit_events (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    incarnation   integer NOT NULL,
    run_id        text NOT NULL,
    event_key     text NOT NULL,
    kind          text NOT NULL,
    phase         text,
    attempt       integer,
    state         text,
    actor         text NOT NULL,
    message       text NOT NULL,
    detail        jsonb,
    at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, run_id, event_key)
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);

-- The tenant's realm: its signing key pair. The private key never leaves the control
-- plane and the tenant's own service.
CREATE TABLE realms (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants(id),
    incarnation  integer NOT NULL,
    key_id       text NOT NULL,
    private_key  text NOT NULL,
    public_jwk   jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Invitations: only the SHA-256 of the code is stored.
CREATE TABLE invitations (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants(id),
    incarnation  integer NOT NULL,
    email        text NOT NULL,
    code_sha256  bytea NOT NULL,
    expires_at   timestamptz NOT NULL,
    redeemed_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE email_deliveries (
    tenant_id    uuid NOT NULL REFERENCES tenants(id),
    incarnation  integer NOT NULL,
    kind         text NOT NULL,
    recipient    text NOT NULL,
    message_id   text NOT NULL,
    status       text NOT NULL CHECK (status IN ('sent', 'refused')),
    error        text,
    attempts     integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, incarnation, kind)
);

