-- Answers to requests sent with an Idempotency-Key header, kept 24 hours. A key belongs to
-- the principal that sent it; `request_sha256` fingerprints what was asked (method, path,
-- body), so the same key with another request is recognised and refused. A row without a
-- status is a request still being handled.
CREATE TABLE idempotency_keys (
    principal_id    uuid NOT NULL REFERENCES principals(id),
    key             text NOT NULL,
    request_sha256  bytea NOT NULL,
    status          integer,
    location        text,
    body            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (principal_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
